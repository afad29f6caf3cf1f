import FakeVLLM
import Foundation
import InferenceAPI
import NIOCore
import TestSupport
import Testing

/// Requests a hostile or careless client sends: each gets vLLM's 400 (or Understudy's own
/// bound, in vLLM's envelope), and the pod goes on serving.
@Suite struct HostileRequestTests {
    static let base = #""model":"meta-llama/Meta-Llama-3-8B""#

    /// The request, then a plain completion: the pod must still answer it.
    func refused(_ live: LiveServer, _ path: String, _ body: String) async throws -> String {
        let response = try await live.request(path, body: body)
        #expect(response.status == 400, "\(body) → \(response.status) \(response.body.prefix(300))")
        let after = try await live.request("/v1/completions", body: #"{"prompt":"still there?","max_tokens":2}"#)
        #expect(after.status == 200)
        return response.json?["error"]?["message"]?.string ?? ""
    }

    @Test func maxTokensAtTheEdgesOfSixtyFourBitsGetVLLMsErrors() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let highest = Int.max
        let lowest = Int.min
        // Completions: vLLM's renderer allows max_model_len − max_tokens prompt tokens (Python's
        // integers: a negative limit is printed as it is).
        let prompt = Tokenizer.shared.encode("x", addSpecialTokens: true).count
        #expect(try await refused(live, "/v1/completions", #"{\#(Self.base),"prompt":"x","max_tokens":\#(highest)}"#)
            == "This model's maximum context length is \(8192 - highest) tokens. However, your request has \(prompt) input tokens. Please reduce the length of the input messages.")
        #expect(try await refused(live, "/v1/completions", #"{\#(Self.base),"prompt":"x","max_tokens":\#(lowest)}"#)
            == "max_tokens must be at least 1, got \(lowest).")
        let chat = #""messages":[{"role":"user","content":"x"}]"#
        let message = try await refused(live, "/v1/chat/completions", #"{\#(chat),"max_tokens":\#(highest)}"#)
        #expect(message.hasPrefix("'max_tokens' or 'max_completion_tokens' is too large: \(highest). This model's maximum context length is 8192 tokens"))
        #expect(try await refused(live, "/v1/chat/completions", #"{\#(chat),"max_completion_tokens":\#(lowest)}"#)
            == "max_tokens must be at least 1, got \(lowest).")
    }

    @Test func nAndBatchesBeyondTheBoundsAreRefusedBeforeAnythingIsAllocated() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        for n in [2_147_483_648, 1_000_000_000, 16385] {
            #expect(try await refused(live, "/v1/completions", #"{"prompt":"x","max_tokens":1,"n":\#(n)}"#)
                == "n must be at most 16384, got \(n). To increase this limit, set the VLLM_MAX_N_SEQUENCES environment variable.")
        }
        // Within vLLM's n but over the output a request may ask for.
        let output = try await refused(live, "/v1/completions", #"{"prompt":"x","max_tokens":8000,"n":1000}"#)
        #expect(output.contains("limit per request is 4194304"))
        // echo sends each prompt back with every completion.
        let longPrompt = "[" + Array(repeating: "7", count: 1000).joined(separator: ",") + "]"
        #expect(try await refused(live, "/v1/completions", #"{"prompt":\#(longPrompt),"max_tokens":1,"n":5000,"echo":true}"#).contains("limit per request"))
        // Each generated token is checked against every stop string.
        let stops = "[" + (0..<100_000).map { "\"s\($0)\"" }.joined(separator: ",") + "]"
        #expect(try await refused(live, "/v1/completions", #"{"prompt":"x","max_tokens":1000,"stop":\#(stops)}"#).contains("stop strings would be checked"))
        let fewer = try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":16,"stop":\#(stops)}"#)
        #expect(fewer.status == 200)
        let prompts = "[" + Array(repeating: #""a""#, count: 20000).joined(separator: ",") + "]"
        #expect(try await refused(live, "/v1/completions", #"{"prompt":\#(prompts),"max_tokens":1}"#).contains("sequences per request"))
    }

    /// Parsing an object was quadratic in its keys: 100,000 stalled a pod for 9 s, 16 MB of
    /// them would have stalled it for half an hour.
    @Test func aBodyWithAQuarterMillionKeysIsAnsweredAndTheLastDuplicateWins() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let keys = (0..<250_000).map { "\"k\($0)\":0" }.joined(separator: ",")
        let response = try await live.request("/v1/completions", body: #"{"prompt":"x","max_tokens":9,"ignore_eos":true,\#(keys),"max_tokens":2}"#)
        #expect(response.status == 200)
        #expect(response.json?["usage"]?["completion_tokens"]?.int == 2)
    }

    @Test func aStopListCoveringEveryWordDoesNotSpin() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let everyID = "[" + (0..<128_256).map(String.init).joined(separator: ",") + "]"
        let response = try await live.request(
            "/v1/completions", body: #"{"prompt":"x","max_tokens":8,"min_tokens":4,"ignore_eos":true,"stop_token_ids":\#(everyID)}"#)
        #expect(response.status == 200)
        #expect(response.json?["usage"]?["completion_tokens"]?.int == 5, "min_tokens, then the first stop token")
    }

    @Test func structuredFieldsOfTheWrongTypeGetPydanticsErrors() async throws {
        let live = try await LiveServer.start()
        defer { Task { try? await live.stop() } }
        let chat = #""messages":[{"role":"user","content":"x"}]"#
        #expect(try await refused(live, "/v1/chat/completions", #"{\#(chat),"tools":"x"}"#)
            == "[{'type': 'list_type', 'loc': ('body', 'tools'), 'msg': 'Input should be a valid list', 'input': 'x'}]")
        #expect(try await refused(live, "/v1/chat/completions", #"{\#(chat),"tools":[1,2],"tool_choice":"none"}"#)
            == "[{'type': 'model_attributes_type', 'loc': ('body', 'tools', 0), 'msg': 'Input should be a valid dictionary or object to extract fields from', 'input': 1}, {'type': 'model_attributes_type', 'loc': ('body', 'tools', 1), 'msg': 'Input should be a valid dictionary or object to extract fields from', 'input': 2}]")
        let wrap = "'function-wrap[__log_extra_fields__()]'"
        let notObject = "'msg': 'Input should be a valid dictionary or object to extract fields from', 'input': 7}"
        #expect(try await refused(live, "/v1/completions", #"{"prompt":"x","response_format":7}"#)
            == "[{'type': 'model_attributes_type', 'loc': ('body', 'response_format', \(wrap)), \(notObject), {'type': 'model_attributes_type', 'loc': ('body', 'response_format', \(wrap)), \(notObject)]")
        #expect(try await refused(live, "/v1/chat/completions", #"{\#(chat),"stream":true,"stream_options":"x"}"#)
            == "[{'type': 'model_attributes_type', 'loc': ('body', 'stream_options'), 'msg': 'Input should be a valid dictionary or object to extract fields from', 'input': 'x'}]")
        #expect(try await refused(live, "/v1/completions", #"{"prompt":"x","structured_outputs":[-1]}"#)
            .contains("'loc': ('body', 'structured_outputs'), 'msg': 'Input should be a dictionary or an instance of StructuredOutputsParams'"))
        #expect(try await refused(live, "/v1/chat/completions", #"{\#(chat),"tool_choice":"auto"}"#).contains("When using `tool_choice`, `tools` must be set."))
        let tools = #""tools":[{"type":"function","function":{"name":"lookup"}}]"#
        #expect(try await refused(live, "/v1/chat/completions", #"{\#(chat),\#(tools),"tool_choice":5}"#)
            .contains(#"Invalid value for `tool_choice`: 5! Only named tools, "none", "auto" or "required" are supported."#))
        #expect(try await refused(live, "/v1/chat/completions", #"{\#(chat),\#(tools),"tool_choice":{"type":"function","function":{"name":"other"}}}"#)
            .contains("The tool specified in `tool_choice` does not match any of the specified `tools`"))
        // Tools with tool_choice auto (the default when tools are given) on a server without
        // --enable-auto-tool-choice.
        #expect(try await refused(live, "/v1/chat/completions", #"{\#(chat),\#(tools)}"#)
            == #""auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"#)
        #expect(try await refused(live, "/v1/chat/completions", #"{"messages":[{"role":"user","content":[{"type":"bogus"}]}]}"#)
            == "Unknown part type: bogus")
        #expect(try await refused(live, "/v1/chat/completions", #"{"messages":[{"role":"user","content":[7]}]}"#)
            .hasPrefix("Invalid content part at messages[0].content[0]"))
        // A text part's text is the prompt.
        let parts = try await live.request("/v1/chat/completions", body: #"{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":1}"#)
        #expect(parts.status == 200)
    }
}
