import AsyncHTTPClient
import FakeVLLM
import Foundation
import InferenceAPI
import NIOCore
import NIOPosix
import TestSupport
import Testing

@Suite struct ServerAPITests {
    @Test func completionHasVLLMsShapeAndUsage() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let response = try await live.request("/v1/completions", body: #"{"model":"meta-llama/Meta-Llama-3-8B","prompt":"Say hello","max_tokens":7,"ignore_eos":true}"#)
        #expect(response.status == 200)
        let json = try #require(response.json)
        #expect(json["object"] == .string("text_completion"))
        #expect(json["id"]?.string?.hasPrefix("cmpl-") == true)
        let choice = try #require(json["choices"]?.array?.first)
        #expect(choice["finish_reason"] == .string("length"))
        #expect(json["usage"]?["completion_tokens"] == .integer(7))
        #expect(json["usage"]?["prompt_tokens"]?.int == Tokenizer.shared.encode("Say hello", addSpecialTokens: true).count)
        // The text is the detokenized output: re-tokenizing it gives the same number of tokens.
        let text = try #require(choice["text"]?.string)
        #expect(Tokenizer.shared.encode(text).count == 7)
    }

    @Test func sameSeedSameOutput() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let body = #"{"prompt":"Once upon a time","max_tokens":40,"seed":7}"#
        let first = try await live.request("/v1/completions", body: body).json?["choices"]?.array?.first?["text"]
        let second = try await live.request("/v1/completions", body: body).json?["choices"]?.array?.first?["text"]
        #expect(first != nil)
        #expect(first == second)
    }

    @Test func streamSendsOneChunkPerTokenThenUsageAndDone() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let response = try await live.request("/v1/chat/completions", body: #"{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}"#)
        #expect(response.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
        let events = response.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(events.last == "data: [DONE]")
        let payloads = events.dropLast().map { try? JSONValue.parse(String($0.dropFirst("data: ".count))) }
        #expect(payloads.count == 6)  // role, 4 tokens, usage
        #expect(payloads.first??["choices"]?.array?.first?["delta"]?["role"] == .string("assistant"))
        #expect(payloads[4]?["choices"]?.array?.first?["finish_reason"] == .string("length"))
        #expect(payloads.last??["usage"]?["completion_tokens"] == .integer(4))
    }

    @Test func stopStringEndsTheOutputBeforeIt() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        // Generated text is words separated by spaces, so " " matches at the first word's start.
        let json = try #require(try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":50,"stop":[" "],"ignore_eos":true}"#).json)
        let choice = try #require(json["choices"]?.array?.first)
        #expect(choice["finish_reason"] == .string("stop"))
        #expect(choice["stop_reason"] == .string(" "))
        #expect(choice["text"] == .string(""))
    }

    @Test func nChoicesAndTokenPrompts() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let json = try #require(try await live.request("/v1/completions", body: #"{"prompt":[[1,2,3],[4,5]],"n":2,"max_tokens":3,"ignore_eos":true}"#).json)
        #expect(json["choices"]?.array?.count == 4)
        #expect(json["usage"]?["prompt_tokens"] == .integer(5))
        #expect(json["usage"]?["completion_tokens"] == .integer(12))
    }

    @Test func badInputGetsVLLMsErrors() async throws {
        let live = try await LiveServer.start { $0.maxModelLen = 64 }
        defer { Task { try? await live.stop() } }
        let unknown = try await live.request("/v1/completions", body: #"{"model":"nope","prompt":"x"}"#)
        #expect(unknown.status == 404)
        #expect(unknown.json?["error"]?["message"] == .string("The model `nope` does not exist."))
        #expect(unknown.json?["error"]?["type"] == .string("NotFoundError"))

        let long = try await live.request("/v1/completions", body: #"{"prompt":[\#(Array(repeating: "1", count: 60).joined(separator: ","))],"max_tokens":10}"#)
        #expect(long.status == 400)
        #expect(long.json?["error"]?["message"] == .string("This model's maximum context length is 54 tokens. However, your request has 60 input tokens. Please reduce the length of the input messages."))

        let malformed = try await live.request("/v1/completions", body: #"{"prompt": "x","#)
        #expect(malformed.status == 400)
        #expect(malformed.json?["error"]?["message"]?.string?.contains("json_invalid") == true)

        let wrongType = try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":"many"}"#)
        #expect(wrongType.status == 400)
        #expect(wrongType.json?["error"]?["message"]?.string?.contains("('body', 'max_tokens')") == true)

        let outOfRange = try await live.request("/v1/completions", body: #"{"prompt":"x","n":0}"#)
        #expect(outOfRange.json?["error"]?["message"] == .string("n must be at least 1, got 0."))

        let temperature = try await live.request("/v1/chat/completions", body: #"{"messages":[{"role":"user","content":"x"}],"temperature":-1}"#)
        #expect(temperature.json?["error"]?["message"] == .string("temperature must be non-negative, got -1.0."))

        var plain = HTTPClientRequest(url: live.base + "/v1/completions")
        plain.method = .POST
        plain.headers.add(name: "content-type", value: "text/plain")
        plain.body = .bytes(ByteBuffer(string: #"{"prompt":"x"}"#))
        let notJSON = try await HTTPClient.forTests.execute(plain, timeout: .seconds(10))
        #expect(notJSON.status.code == 400)
        #expect(String(buffer: try await notJSON.body.collect(upTo: 4096)).contains("Unsupported Media Type"))

        // None of it disturbed the server.
        #expect(try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":2}"#).status == 200)
    }

    @Test func logprobsHaveVLLMsShapes() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let completion = try #require(try await live.request("/v1/completions", body: #"{"prompt":"Hi","max_tokens":4,"logprobs":3,"ignore_eos":true}"#).json)
        let logprobs = try #require(completion["choices"]?.array?.first?["logprobs"])
        let tokens = try #require(logprobs["tokens"]?.array)
        #expect(tokens.count == 4)
        #expect(logprobs["token_logprobs"]?.array?.count == 4)
        #expect(logprobs["text_offset"]?.array?.first == .integer(0))
        // The sampled token plus the top 3, the sampled one being the most likely here.
        let top = try #require(logprobs["top_logprobs"]?.array?.first)
        guard case .object(let entries) = top else { Issue.record("top_logprobs entry is not an object"); return }
        #expect(entries.count == 3)
        #expect(entries[tokens[0].string ?? ""] != nil)

        let chat = try #require(try await live.request("/v1/chat/completions", body: #"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"logprobs":true,"top_logprobs":2}"#).json)
        let content = try #require(chat["choices"]?.array?.first?["logprobs"]?["content"]?.array)
        #expect(content.count == chat["usage"]?["completion_tokens"]?.int)
        #expect(content.first?["top_logprobs"]?.array?.count == 2)
        #expect(content.first?["bytes"]?.array?.isEmpty == false)

        let tooMany = try await live.request("/v1/completions", body: #"{"prompt":"Hi","logprobs":21}"#)
        #expect(tooMany.status == 400)
        #expect(tooMany.json?["error"]?["message"] == .string("Requested sample logprobs of 21, which is greater than max allowed: 20"))
    }

    @Test func streamOptionsDefaultToIncludingUsage() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let response = try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":2,"ignore_eos":true,"stream":true,"stream_options":{}}"#)
        let events = response.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        let usage = try #require(events.dropLast().last.flatMap { try? JSONValue.parse(String($0.dropFirst(6))) })
        #expect(usage["choices"] == .array([]))
        #expect(usage["usage"]?["completion_tokens"] == .integer(2))
    }

    @Test func modelNamesAsVLLM() async throws {
        let live = try await LiveServer.start { $0.servedModelNames = ["llama", "alias"] }
        defer { Task { try? await live.stop() } }
        // Any served name, or none, is the base model; the response names the first served name.
        for model in ["alias", ""] {
            let json = try await live.request("/v1/completions", body: #"{"model":"\#(model)","prompt":"x","max_tokens":1}"#).json
            #expect(json?["model"] == .string("llama"))
        }
        // --model is no longer a name once --served-model-name is given.
        #expect(try await live.request("/v1/completions", body: #"{"model":"meta-llama/Meta-Llama-3-8B","prompt":"x"}"#).status == 404)
        // The model is checked before the sampling parameters.
        #expect(try await live.request("/v1/completions", body: #"{"model":"nope","prompt":"x","n":0}"#).status == 404)
    }

    @Test func nullMaxTokensMeansTheRestOfTheContext() async throws {
        let live = try await LiveServer.start { $0.maxModelLen = 64 }
        defer { Task { try? await live.stop() } }
        let json = try await live.request("/v1/completions", body: #"{"prompt":[1,2,3,4],"max_tokens":null,"ignore_eos":true}"#).json
        #expect(json?["usage"]?["completion_tokens"] == .integer(60))
        let absent = try await live.request("/v1/completions", body: #"{"prompt":[1,2,3,4],"ignore_eos":true}"#).json
        #expect(absent?["usage"]?["completion_tokens"] == .integer(16))
    }

    @Test func stopTokenIDsEndTheOutputWithoutTheirText() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let free = try #require(try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":5,"ignore_eos":true,"seed":3,"logprobs":0}"#).json)
        let tokenList = free["choices"]?.array?.first?["logprobs"]?["tokens"]?.array ?? []
        let words = tokenList.compactMap { $0.string }
        try #require(words.count == 5)
        let third = Tokenizer.shared.encode(words[2])
        try #require(third.count == 1 && !words[0...1].contains(words[2]))
        let stopped = try #require(try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":5,"seed":3,"ignore_eos":true,"stop_token_ids":[\#(third[0])]}"#).json)
        let choice = try #require(stopped["choices"]?.array?.first)
        #expect(choice["text"] == .string(words[0] + words[1]))
        #expect(choice["finish_reason"] == .string("stop"))
        #expect(choice["stop_reason"] == .integer(third[0]))
        #expect(stopped["usage"]?["completion_tokens"] == .integer(3))
    }

    @Test func streamsHoldBackTextThatCouldStartAStopString() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let body = #"{"prompt":"x","max_tokens":6,"ignore_eos":true,"seed":5,"stop":["never-appears"]"#
        let whole = try #require(try await live.request("/v1/completions", body: body + "}").json?["choices"]?.array?.first?["text"]?.string)
        let stream = try await live.request("/v1/completions", body: body + #","stream":true}"#)
        let texts = stream.body.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }
            .compactMap { try? JSONValue.parse(String($0.dropFirst(6))) }
            .compactMap { $0["choices"]?.array?.first?["text"]?.string }
        #expect(texts.count == 6)
        #expect(texts.joined() == whole)
        // The last 12 bytes (the longest stop string minus one) only arrive with the final chunk.
        #expect(texts.last!.utf8.count >= min(12, whole.utf8.count))
    }

    @Test func stopsAsVLLMChecksThem() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        // max_tokens is checked before EOS, so a one-token answer always ends "length".
        for seed in 0..<20 {
            let json = try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":1,"seed":\#(seed)}"#).json
            #expect(json?["choices"]?.array?.first?["finish_reason"] == .string("length"))
        }
        let kept = try #require(try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":50,"ignore_eos":true,"stop":[" "],"include_stop_str_in_output":true}"#).json)
        #expect(kept["choices"]?.array?.first?["text"] == .string(" "))
        var bad = HTTPClientRequest(url: live.base + "/v1/completions")
        bad.method = .POST
        bad.headers.add(name: "content-type", value: "application/json")
        bad.body = .bytes(ByteBuffer(bytes: Array(#"{"prompt":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)))
        let response = try await HTTPClient.forTests.execute(bad, timeout: .seconds(10))
        #expect(response.status.code == 400)
        #expect(String(buffer: try await response.body.collect(upTo: 4096)).contains("There was an error parsing the body"))
    }

    @Test func oversizedBodyGets413() async throws {
        let live = try await LiveServer.start { $0.maxBodyBytes = 1024 }
        defer { Task { try? await live.stop() } }
        let response = try await live.request("/v1/completions", body: #"{"prompt":"\#(String(repeating: "a", count: 4096))"}"#)
        #expect(response.status == 413)
        #expect(response.json?["error"]?["code"] == .integer(413))
    }

    @Test func apiKeyGuardsV1Only() async throws {
        let live = try await LiveServer.start { $0.apiKey = "sekrit" }
        defer { Task { try? await live.stop() } }
        let denied = try await live.get("/v1/models")
        #expect(denied.status == 401)
        #expect(denied.body == #"{"error":"Unauthorized"}"#)
        #expect(try await live.get("/v1/models", headers: [("authorization", "Bearer sekrit")]).status == 200)
        #expect(try await live.get("/health").status == 200)
        #expect(try await live.get("/metrics").status == 200)
    }

    @Test func tokenizeAndDetokenizeRoundTrip() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let tokenized = try #require(try await live.request("/tokenize", body: #"{"prompt":"the model serves","add_special_tokens":false}"#).json)
        let tokens = try #require(tokenized["tokens"]?.array)
        #expect(tokenized["count"]?.int == tokens.count)
        let body = #"{"tokens":[\#(tokens.compactMap(\.int).map(String.init).joined(separator: ","))]}"#
        #expect(try await live.request("/detokenize", body: body).json?["prompt"] == .string("the model serves"))
    }

    @Test func runtimeLoRAUpdatesFollowVLLM() async throws {
        let live = try await LiveServer.start {
            $0.enableLoRA = true
            $0.maxLoras = 2
            $0.allowRuntimeLoRAUpdating = true
            $0.loraModules = [LoRAModule(name: "sql", path: "/adapters/sql")]
        }
        defer { Task { try? await live.stop() } }
        let load = try await live.request("/v1/load_lora_adapter", body: #"{"lora_name":"chat","lora_path":"/adapters/chat"}"#)
        #expect(load.status == 200)
        #expect(load.body == "Success: LoRA adapter 'chat' added successfully.")
        let again = try await live.request("/v1/load_lora_adapter", body: #"{"lora_name":"chat","lora_path":"/adapters/chat"}"#)
        #expect(again.status == 400)
        #expect(again.json?["error"]?["type"] == .string("InvalidUserInput"))
        let models = try #require(try await live.get("/v1/models").json?["data"]?.array)
        let card = try #require(models.first { $0["id"] == .string("chat") })
        #expect(card["root"] == .string("/adapters/chat"))
        #expect(card["parent"] == .string("meta-llama/Meta-Llama-3-8B"))
        #expect(try await live.request("/v1/completions", body: #"{"model":"chat","prompt":"x","max_tokens":2}"#).status == 200)
        #expect(try await live.request("/v1/unload_lora_adapter", body: #"{"lora_name":"chat"}"#).body == "Success: LoRA adapter 'chat' removed successfully.")
        let gone = try await live.request("/v1/unload_lora_adapter", body: #"{"lora_name":"chat"}"#)
        #expect(gone.status == 404)
        #expect(try await live.request("/v1/completions", body: #"{"model":"chat","prompt":"x"}"#).status == 404)
    }

    @Test func runtimeLoRARoutesAbsentWithoutTheVariable() async throws {
        let live = try await LiveServer.start { $0.enableLoRA = true }
        defer { Task { try? await live.stop() } }
        let response = try await live.request("/v1/load_lora_adapter", body: #"{"lora_name":"a","lora_path":"/a"}"#)
        #expect(response.status == 404)
        #expect(response.body == #"{"detail":"Not Found"}"#)
    }

    @Test func startupDelayKeepsHealthAt503() async throws {
        let live = try await LiveServer.start { $0.startupDelay = 30 }
        defer { Task { try? await live.stop() } }
        #expect(try await live.get("/health").status == 503)
        #expect(try await live.request("/v1/completions", body: #"{"prompt":"x"}"#).status == 503)
    }
}

@Suite struct ServerRobustnessTests {
    /// Sends raw bytes on a fresh connection and returns whatever the server answered before
    /// closing (or until `timeout`).
    func raw(_ port: Int, _ bytes: String) async throws -> String {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: bytes))
            var received = ""
            for try await chunk in inbound {
                received += String(buffer: chunk)
                if received.contains("\r\n\r\n") { break }
            }
            return received
        }
    }

    @Test func malformedHTTPGets400AndTheServerGoesOn() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let answer = try await raw(live.server.port, "THIS IS NOT HTTP\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 400"))
        let truncated = try await raw(live.server.port, "POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        #expect(truncated.hasPrefix("HTTP/1.1 400"))
        #expect(try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":2}"#).status == 200)
    }

    /// uvicorn closes an HTTP/1.0 connection after its response, keep-alive or not, so a
    /// stream's end is the connection's end.
    @Test func http10StreamEndsWithTheConnection() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let body = #"{"prompt":"x","max_tokens":3,"stream":true}"#
        let request = "POST /v1/completions HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: live.server.port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let received = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            var text = ""
            for try await chunk in inbound { text += String(buffer: chunk) }  // ends when the server closes
            return text
        }
        // uvicorn answers HTTP/1.1 with chunked framing even to a 1.0 client, and closes.
        #expect(received.hasPrefix("HTTP/1.1 200 OK"))
        #expect(received.contains("connection: close"))
        #expect(received.contains("data: [DONE]\n\n"))
        #expect(received.hasSuffix("0\r\n\r\n"))
    }

    @Test func pipelinedRequestsAnswerInOrder() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let body = #"{"prompt":"x","max_tokens":1}"#
        let one = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: live.server.port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let received = try await channel.executeThenClose { inbound, outbound in
            // More than the handler queues (16): reading pauses and resumes as responses end.
            try await outbound.write(ByteBuffer(string: String(repeating: one, count: 40) + "GET /version HTTP/1.1\r\nHost: x\r\n\r\n"))
            var text = ""
            for try await chunk in inbound {
                text += String(buffer: chunk)
                if text.contains(#"{"version":"0.11.0"}"#) { break }
            }
            return text
        }
        #expect(received.components(separatedBy: "HTTP/1.1 200 OK").count == 42)
        #expect(received.hasSuffix(#"{"version":"0.11.0"}"#))
    }
}
