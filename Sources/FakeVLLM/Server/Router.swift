import Foundation
import InferenceAPI
import Logging
import NIOCore
import NIOHTTP1

/// vLLM 0.11.0's OpenAI-compatible routes over the engine driver. Everything runs on the
/// engine's event loop (connections are accepted onto it), so no state here is shared
/// across threads.
final class Router: HTTPRequestRouter, @unchecked Sendable {
    /// The vLLM release whose wire behaviour this server reproduces.
    static let vllmVersion = "0.11.0"

    let configuration: ServerConfiguration
    let setup: EngineSetup
    let driver: EngineDriver
    /// The model's tokenizer (`--tokenizer`), else the built-in approximation.
    let tokenizer: any TextTokenizer
    var maxBodyBytes: Int { configuration.maxBodyBytes }
    /// uvicorn's access log (`understudy serve`; a fleet's in-process pods log nothing).
    let accessLog: Logger?
    /// Makes response ids, as vLLM's uuid4s: unique across pods and restarts (--seed must not
    /// repeat them), and apart from output seeds, so that listing models leaves outputs alone.
    private var idGenerator = SplitMix64(seed: UInt64.random(in: .min ... .max))
    /// The server's start, as its process_start_time_seconds (a pod in a shared process
    /// reports its own).
    private let startedAt = Date().timeIntervalSince1970
    /// The pod's rules and state, owned by the driver on this loop.
    var core: PodCore {
        get { driver.core }
        _modify { yield &driver.core }
    }

    init(configuration: ServerConfiguration, setup: EngineSetup, driver: EngineDriver, accessLog: Logger?) {
        self.configuration = configuration
        self.setup = setup
        self.driver = driver
        self.accessLog = configuration.accessLog ? accessLog : nil
        self.tokenizer = setup.tokenizer
    }

    /// Chaos: while hung, requests are read and left unanswered (as by a stopped process);
    /// on release they are served in arrival order.
    private var heldRequests: [(IncomingRequest, ResponseWriter, HeldResponse)] = []
    var heldRequestCount: Int { heldRequests.filter { !$0.2.isDone }.count }

    /// Puts a fault on the pod or lifts it; requests held by a hang are served once it lifts.
    func apply(_ fault: PodFault) {
        driver.apply(fault)
        guard !core.faults.hung, !heldRequests.isEmpty else { return }
        let held = heldRequests
        heldRequests = []
        for (request, writer, placeholder) in held where !placeholder.isDone {
            placeholder.inner = route(request, writer: writer)
        }
    }

    /// Serves one request; returns the responder when the response outlives this call.
    func route(_ request: IncomingRequest, writer: ResponseWriter) -> (any InFlightResponse)? {
        if core.faults.hung {
            let placeholder = HeldResponse()
            heldRequests.append((request, writer, placeholder))
            return placeholder
        }
        let path = String(request.path)
        if let key = configuration.apiKey, path.hasPrefix("/v1"), request.method != .OPTIONS, !BearerToken.matches(request.headers, key) {
            writer.respond(status: .unauthorized, contentType: "application/json", body: ByteBuffer(string: #"{"error":"Unauthorized"}"#))
            return nil
        }
        if request.method == .POST, Self.jsonRoutes.contains(path), !Self.isJSON(request.headers) {
            // vLLM's validate_json_request: a RequestValidationError whose str() is empty, so the
            // message starts with a space.
            writer.respond(APIError(status: 400, type: "Bad Request", message: #" ["Unsupported Media Type: Only 'application/json' is allowed"]"#))
            return nil
        }
        switch (request.method, path) {
        case (.GET, "/health"), (.GET, "/ping"), (.POST, "/ping"):
            writer.writeHead(status: core.ready ? .ok : .serviceUnavailable, contentType: nil, contentLength: 0)
            writer.writeBodyAndEnd(ByteBuffer())
        case (.GET, "/metrics"):
            var page = ByteBuffer()
            if let reading = ProcessMetrics.current() { ProcessMetrics.write(reading, startTime: startedAt, to: &page) }
            var engine = driver.metrics.render()
            page.writeBuffer(&engine)
            writer.respond(status: .ok, contentType: Prometheus.contentType, body: page)
        case (.GET, "/version"):
            respondJSON(writer, #"{"version":"\#(Self.vllmVersion)"}"#)
        case (.GET, "/load"):
            respondJSON(writer, #"{"server_load":\#(configuration.enableServerLoadTracking ? core.inFlight : 0)}"#)
        case _ where core.unavailability != nil:
            writer.respond(core.unavailability!)
        case (.GET, "/v1/models"):
            writer.respond(status: .ok, contentType: "application/json", body: modelList())
        case (.POST, "/v1/completions"):
            return generate(request, kind: .completion, writer: writer)
        case (.POST, "/v1/chat/completions"):
            return generate(request, kind: .chat, writer: writer)
        case (.POST, "/v1/responses"):
            return generate(request, kind: .chat, responsesAPI: true, writer: writer)
        case (.GET, _) where path.hasPrefix("/v1/responses/"):
            // No response store (VLLM_ENABLE_RESPONSES_API_STORE off): no response is ever found.
            let responseID = path.dropFirst("/v1/responses/".count).split(separator: "/").first.map(String.init) ?? ""
            writer.respond(APIError(status: 404, type: "invalid_request_error", message: "Response with id '\(responseID)' not found.", param: nil))
        case (.POST, "/v1/embeddings"):
            let refusal = embeddingsRefusal(request.body)
            // 0.11.0 returns its error object from the route instead of a response, so FastAPI
            // sends it with 200 (vLLM issue 21704); a schema failure is a real 400.
            writer.respond(status: refusal.type == "Bad Request" ? .badRequest : .ok, contentType: "application/json", body: refusal.body())
        case (.POST, "/tokenize"):
            respond(writer) { () throws(APIError) in try tokenize(request.body) }
        case (.POST, "/detokenize"):
            respond(writer) { () throws(APIError) in try detokenize(request.body) }
        case (.POST, "/v1/load_lora_adapter") where configuration.allowRuntimeLoRAUpdating:
            respondText(writer) { () throws(APIError) in try loadAdapter(request.body) }
        case (.POST, "/v1/unload_lora_adapter") where configuration.allowRuntimeLoRAUpdating:
            respondText(writer) { () throws(APIError) in try unloadAdapter(request.body) }
        case (_, "/health"), (_, "/metrics"), (_, "/version"), (_, "/load"), (_, "/v1/models"), (_, "/v1/completions"),
             (_, "/v1/chat/completions"), (_, "/tokenize"), (_, "/detokenize"):
            respondJSON(writer, #"{"detail":"Method Not Allowed"}"#, status: .methodNotAllowed)
        default:
            respondJSON(writer, #"{"detail":"Not Found"}"#, status: .notFound)
        }
        return nil
    }

    /// vLLM 0.11.0's answer on /v1/embeddings for a generative model: the request model (a
    /// union of a completion-style and a chat-style request) is validated, then no embedding
    /// handler is found (newer releases do not route the path at all).
    private func embeddingsRefusal(_ body: ByteBuffer) -> APIError {
        do throws(APIError) {
            let parsed = try parseBody(body)
            let variants: [(name: String, field: String)] = [("EmbeddingCompletionRequest", "input"), ("EmbeddingChatRequest", "messages")]
            guard case .object(let fields) = parsed else {
                return APIError.validation(variants.map {
                    .init(kind: "model_attributes_type", location: ["body", .field($0.name)], message: GenerationRequest.notAnObject, input: parsed)
                })
            }
            guard fields["input"] != nil || fields["messages"] != nil else {
                return APIError.validation(variants.map {
                    .init(kind: "missing", location: ["body", .field($0.name), .field($0.field)], message: "Field required", input: parsed)
                })
            }
            return APIError.badRequest("The model does not support Embeddings API")
        } catch {
            return error
        }
    }

    /// Routes whose body vLLM requires to be `application/json`.
    static let jsonRoutes: Set<String> = [
        "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize", "/v1/load_lora_adapter", "/v1/unload_lora_adapter",
        "/v1/embeddings", "/v1/responses",
    ]

    static func isJSON(_ headers: HTTPHeaders) -> Bool {
        let value = headers.first(name: "content-type") ?? ""
        let mediaType = value.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        return mediaType == "application/json"
    }

    // MARK: Generation

    private func generate(
        _ incoming: IncomingRequest, kind: GenerationRequest.Kind, responsesAPI: Bool = false, writer: ResponseWriter
    ) -> (any GenerationSink)? {
        let request: GenerationRequest
        var responses: ResponsesRequest?
        let admission: Admission
        do throws(APIError) {
            let body = try parseBody(incoming.body)
            if responsesAPI {
                let translated = try ResponsesRequest(body)
                responses = translated
                request = try GenerationRequest(translated.chatBody, kind: kind)
            } else {
                request = try GenerationRequest(body, kind: kind)
            }
            admission = try core.admit(request, outputCap: responses?.maxOutputTokens)
        } catch {
            writer.respond(error)
            return nil
        }
        // A schema or pattern is compiled by the engine's front end too: refused after the
        // request was accepted, so a stream carries the error (vLLM's guided-decoding check).
        var constraint: OutputConstraint?
        var rejection = core.engineRejection(request, admission)
        if rejection == nil {
            do {
                constraint = try OutputConstraint(request, toolCallParser: configuration.toolCallParser)
            } catch {
                rejection = error
            }
        }
        if let error = rejection {
            if request.stream {
                // As vLLM: the stream has started (200), so the error is an event before [DONE].
                var body = ByteBuffer()
                SSE.beginEvent(&body)
                body.writeString(error.pythonJSON())
                SSE.endEvent(&body)
                SSE.writeDone(&body)
                writer.respond(status: .ok, contentType: SSE.contentType, body: body)
            } else {
                writer.respond(error)
            }
            return nil
        }

        core.recordAccepted(model: request.model)
        if let fault = core.drawInjectedFault() {
            switch fault {
            case .status(let status):
                writer.respond(APIError(
                    status: status, type: status >= 500 ? "InternalServerError" : "BadRequestError", message: "Injected fault (understudy chaos)."))
                return nil
            case .cutStream:
                // A stream gets a couple of events, then the connection goes; a whole response never comes.
                writer.cutAfterBodyChunks = request.stream ? 2 : 0
            }
        }
        let now = driver.now
        let requestID = incoming.headers.first(name: "x-request-id") ?? randomHex()
        let created = Int(Date().timeIntervalSince1970)
        let modelName = admission.lora?.name ?? configuration.primaryModelName
        let responder: any GenerationSink
        if let responses {
            // vLLM names a response by its own `request_id` field (resp_ and a uuid4), not the header.
            responder = ResponsesResponder(
                request: request, responses: responses, writer: writer, driver: driver, id: "resp_" + randomHex(), created: created,
                modelName: modelName, promptTokens: admission.prompts[0].count, maxOutputTokens: admission.maxTokens[0])
        } else {
            responder = GenerationResponder(
                request: request, writer: writer, driver: driver, tokenizer: tokenizer, id: (kind == .completion ? "cmpl-" : "chatcmpl-") + requestID,
                created: created, modelName: modelName, promptTokenCounts: admission.prompts.map(\.count),
                includeCachedTokens: configuration.enablePromptTokensDetails)
        }
        core.inFlight += 1
        let sequences = core.planSequences(request, admission, constraint: constraint, now: now)
        for sequence in sequences {
            responder.add(.init(plan: sequence.plan, sequenceID: sequence.request.id, promptIndex: sequence.promptIndex, output: sequence.output))
        }
        responder.start()
        for sequence in sequences { driver.submit(sequence.request, sink: responder) }
        return responder
    }

    private func parseBody(_ body: ByteBuffer) throws(APIError) -> JSONValue {
        guard body.readableBytes > 0 else {
            throw APIError.validation(kind: "missing", location: ["body"], message: "Field required", input: nil)
        }
        // Bytes that are not UTF-8 fail before JSON parsing in FastAPI, with its generic message.
        let isUTF8 = body.withUnsafeReadableBytes { String(validating: $0, as: UTF8.self) != nil }
        guard isUTF8 else {
            throw APIError(status: 400, type: "Bad Request", message: "There was an error parsing the body")
        }
        do {
            return try JSONValue.parse(body)
        } catch {
            throw APIError(
                status: 400, type: "Bad Request",
                message: "[{'type': 'json_invalid', 'loc': ('body', \(error.offset)), 'msg': 'JSON decode error', 'input': {}, 'ctx': {'error': \(APIError.pythonRepr(.string(error.reason)))}}]")
        }
    }

    // MARK: Other endpoints

    private func modelList() -> ByteBuffer {
        let created = Int(Date().timeIntervalSince1970)
        var buffer = ByteBuffer()
        buffer.writeStaticString(#"{"object":"list","data":["#)
        var cards: [(id: String, root: String, parent: String?, maxModelLen: Int?)] = []
        for name in core.baseModelNames {
            cards.append((name, configuration.model, nil, setup.engineConfig.maxModelLen))
        }
        for entry in core.adapters { cards.append((entry.name, entry.path, entry.parent, nil)) }
        for (index, card) in cards.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            buffer.writeStaticString(#"{"id":"#)
            buffer.writeJSONString(card.id)
            buffer.writeStaticString(#","object":"model","created":"#)
            buffer.writeJSONInteger(created)
            buffer.writeStaticString(#","owned_by":"vllm","root":"#)
            buffer.writeJSONString(card.root)
            buffer.writeStaticString(#","parent":"#)
            buffer.writeJSONString(orNull: card.parent)
            buffer.writeStaticString(#","max_model_len":"#)
            if let length = card.maxModelLen { buffer.writeJSONInteger(length) } else { buffer.writeStaticString("null") }
            buffer.writeStaticString(#","permission":[{"id":"modelperm-"#)
            buffer.writeString(randomHex())
            buffer.writeStaticString(#"","object":"model_permission","created":"#)
            buffer.writeJSONInteger(created)
            buffer.writeStaticString(#","allow_create_engine":false,"allow_sampling":true,"allow_logprobs":true,"allow_search_indices":false,"allow_view":true,"allow_fine_tuning":false,"organization":"*","group":null,"is_blocking":false}]}"#)
        }
        buffer.writeStaticString("]}")
        return buffer
    }

    private func tokenize(_ body: ByteBuffer) throws(APIError) -> ByteBuffer {
        let json = try parseBody(body)
        let reader = FieldReader(body: json)
        _ = try core.resolveModel(try reader.string("model"))
        let tokens: [Int]
        if let prompt = try reader.string("prompt") {
            tokens = tokenizer.encode(prompt, addSpecialTokens: try reader.bool("add_special_tokens") ?? true)
        } else if json["messages"] != nil {
            let chat = try GenerationRequest(.object(["messages": json["messages"]!]), kind: .chat)
            guard case .text(let text) = chat.prompts[0] else { return ByteBuffer() }
            tokens = tokenizer.encode(text, addSpecialTokens: try reader.bool("add_special_tokens") ?? false)
        } else {
            throw APIError.validation(kind: "missing", location: ["body", "prompt"], message: "Field required", input: json)
        }
        var buffer = ByteBuffer()
        buffer.writeStaticString(#"{"count":"#)
        buffer.writeJSONInteger(tokens.count)
        buffer.writeStaticString(#","max_model_len":"#)
        buffer.writeJSONInteger(setup.engineConfig.maxModelLen)
        buffer.writeStaticString(#","tokens":["#)
        buffer.writeString(tokens.map(String.init).joined(separator: ","))
        buffer.writeStaticString(#"],"token_strs":"#)
        if try reader.bool("return_token_strs") ?? false {
            buffer.writeJSON(.array(tokens.map { .string(tokenizer.tokenString($0)) }))
        } else {
            buffer.writeStaticString("null")
        }
        buffer.writeStaticString("}")
        return buffer
    }

    private func detokenize(_ body: ByteBuffer) throws(APIError) -> ByteBuffer {
        let json = try parseBody(body)
        let reader = FieldReader(body: json)
        _ = try core.resolveModel(try reader.string("model"))
        guard let tokens = try reader.integerList("tokens") else {
            throw APIError.validation(kind: "missing", location: ["body", "tokens"], message: "Field required", input: json)
        }
        var buffer = ByteBuffer()
        buffer.writeStaticString(#"{"prompt":"#)
        buffer.writeJSONString(tokenizer.decode(tokens))
        buffer.writeStaticString("}")
        return buffer
    }

    private func loadAdapter(_ body: ByteBuffer) throws(APIError) -> String {
        let reader = FieldReader(body: try parseBody(body))
        return try core.loadAdapter(name: try reader.string("lora_name") ?? "", path: try reader.string("lora_path") ?? "")
    }

    private func unloadAdapter(_ body: ByteBuffer) throws(APIError) -> String {
        let reader = FieldReader(body: try parseBody(body))
        return try core.unloadAdapter(name: try reader.string("lora_name") ?? "")
    }

    // MARK: Helpers

    private func respond(_ writer: ResponseWriter, _ body: () throws(APIError) -> ByteBuffer) {
        do throws(APIError) {
            writer.respond(status: .ok, contentType: "application/json", body: try body())
        } catch {
            writer.respond(error)
        }
    }

    /// vLLM answers the LoRA routes with a bare text body.
    private func respondText(_ writer: ResponseWriter, _ body: () throws(APIError) -> String) {
        do throws(APIError) {
            writer.respond(status: .ok, contentType: nil, body: ByteBuffer(string: try body()))
        } catch {
            writer.respond(error)
        }
    }

    private func respondJSON(_ writer: ResponseWriter, _ text: String, status: HTTPResponseStatus = .ok) {
        writer.respond(status: status, contentType: "application/json", body: ByteBuffer(string: text))
    }

    /// 32 lowercase hex digits, as `uuid4().hex`.
    private func randomHex() -> String {
        func hex16(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        return hex16(idGenerator.next()) + hex16(idGenerator.next())
}
}

/// A request held by a hung server; once released, the real response stands in for it.
final class HeldResponse: InFlightResponse {
    var inner: (any InFlightResponse)?
    private var cancelled = false
    var isDone: Bool { cancelled || (inner.map { $0.isDone } ?? false) }
    func cancel() {
        cancelled = true
        inner?.cancel()
    }
}

/// Chaos: what share of generation requests fails, and how.
public struct FaultInjection: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Answer with this HTTP status and vLLM's error envelope.
        case status(Int)
        /// Cut the connection mid-response: after two events of a stream, before a whole body.
        case cutStream
    }

    /// 0…1.
    public var rate: Double
    public var kind: Kind

    public init(rate: Double, kind: Kind) {
        self.rate = rate
        self.kind = kind
    }
}
