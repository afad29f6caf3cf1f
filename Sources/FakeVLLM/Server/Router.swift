import Foundation
import InferenceAPI
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
    /// Adapters by name, in load order: path, base model, rank bytes.
    private var adapters: [(name: String, path: String, parent: String, adapter: LoRAAdapter)] = []
    /// Seeds outputs without a request seed: --seed and arrival order decide them.
    private var generator: SplitMix64
    /// Makes ids; kept apart so that listing models or sending X-Request-Id leaves outputs alone.
    private var idGenerator: SplitMix64
    private(set) var ready: Bool
    /// The server's start, as its process_start_time_seconds (a pod in a shared process
    /// reports its own).
    private let startedAt = Date().timeIntervalSince1970
    /// Generation requests accepted, by the model name they asked for (an adapter or the base
    /// model): what vLLM's request log would show, for tests and fleet reports.
    private(set) var acceptedRequests: [String: Int] = [:]

    init(configuration: ServerConfiguration, setup: EngineSetup, driver: EngineDriver) {
        self.configuration = configuration
        self.setup = setup
        self.driver = driver
        self.tokenizer = setup.tokenizer
        self.generator = SplitMix64(seed: configuration.seed)
        // Ids are unique across pods and restarts, as vLLM's uuid4s are: --seed must not repeat them.
        self.idGenerator = SplitMix64(seed: UInt64.random(in: .min ... .max))
        self.ready = configuration.startupDelay <= 0
        let bytes = setup.model.loraAdapterBytes(rank: configuration.maxLoRARank)
        for module in configuration.loraModules {
            // Like vLLM, --lora-modules only registers names; the first request loads the adapter.
            adapters.append((module.name, module.path, module.baseModelName ?? configuration.primaryModelName, LoRAAdapter(name: module.name, bytes: bytes)))
        }
    }

    /// Loads registered adapters into the host cache now, as a runtime load would, so their
    /// first request does not read them from storage. Unknown names are ignored.
    func preload(_ names: [String]) {
        for name in names where adapters.contains(where: { $0.name == name }) { driver.cacheAdapter(name) }
    }

    /// Ends the emulated model load: from now on /health is 200 and requests are served.
    func markReady() { ready = true }

    /// Chaos: while hung, requests are read and left unanswered (as by a stopped process);
    /// on release they are served in arrival order.
    private var heldRequests: [(IncomingRequest, ResponseWriter, HeldResponse)] = []
    var heldRequestCount: Int { heldRequests.filter { !$0.2.isDone }.count }
    var hung = false {
        didSet {
            driver.hung = hung
            guard !hung else { return }
            let held = heldRequests
            heldRequests = []
            for (request, writer, placeholder) in held where !placeholder.isDone {
                placeholder.inner = route(request, writer: writer)
            }
        }
    }

    /// Chaos: a share of generation requests fails, with an HTTP error or a cut connection.
    var faults: FaultInjection?
    private var faultGenerator = SplitMix64(seed: 0xFA17)

    /// Shutting down: /health fails and new requests are refused; those in flight go on.
    private(set) var draining = false
    func beginDraining() {
        draining = true
        ready = false
    }

    /// Serves one request; returns the responder when the response outlives this call.
    func route(_ request: IncomingRequest, writer: ResponseWriter) -> (any InFlightResponse)? {
        if hung {
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
            writer.writeHead(status: ready ? .ok : .serviceUnavailable, contentType: nil, contentLength: 0)
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
            respondJSON(writer, #"{"server_load":\#(configuration.enableServerLoadTracking ? driver.serverLoad : 0)}"#)
        case _ where draining:
            writer.respond(APIError(status: 503, type: "ServiceUnavailableError", message: "The server is shutting down.", param: nil))
        case _ where !ready:
            writer.respond(APIError(status: 503, type: "ServiceUnavailableError", message: "The model is still loading.", param: nil))
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

    /// vLLM's default `--max-logprobs`.
    static let maxLogprobs = 20

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
        let lora: LoRAAdapter?
        var prompts: [[Int]] = []
        var maxTokensPerPrompt: [Int] = []
        // vLLM's order: the request model, the model name (404), the context length, then the
        // sampling parameters; the engine's own checks come after a stream has started.
        do throws(APIError) {
            let body = try parseBody(incoming.body)
            if responsesAPI {
                let translated = try ResponsesRequest(body)
                responses = translated
                request = try GenerationRequest(translated.chatBody, kind: kind)
            } else {
                request = try GenerationRequest(body, kind: kind)
            }
            lora = try resolveModel(request.model)
            if lora != nil, setup.engineConfig.maxLoras == 0 {
                throw APIError.badRequest("LoRA is not enabled. Use --enable-lora to enable LoRA.")
            }
            if request.hasMedia {
                // Every emulated model is text-only. vLLM 0.11.0's multimodal registry refuses
                // before fetching anything, naming --model, and the chat server appends the
                // error's cause (None).
                throw APIError.badRequest("\(configuration.model) is not a multimodal model None")
            }
            if request.toolMode == .auto, !configuration.enableAutoToolChoice {
                // vLLM's chat server started without --enable-auto-tool-choice.
                throw APIError.badRequest(#""auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"#)
            }
            // Every prompt's length first, then the sampling parameters (vLLM renders all prompts
            // before it builds any SamplingParams).
            for prompt in request.prompts {
                let tokens: [Int]
                switch prompt {
                case .text(let text): tokens = tokenizer.encode(text, addSpecialTokens: true)
                case .tokens(let ids): tokens = ids
                }
                prompts.append(tokens)
                var maxTokens = try checkLength(promptTokens: tokens.count, maxTokens: request.maxTokens, kind: kind)
                // The Responses API caps max_output_tokens by the room left, where chat refuses.
                if let wanted = responses?.maxOutputTokens { maxTokens = min(wanted, maxTokens) }
                maxTokensPerPrompt.append(maxTokens)
            }
            for maxTokens in maxTokensPerPrompt { try request.validateSampling(maxTokens: maxTokens, maxN: configuration.requestBudget.maxN) }
            try checkBudget(request, maxTokensPerPrompt: maxTokensPerPrompt, promptLengths: prompts.map(\.count))
        } catch {
            writer.respond(error)
            return nil
        }
        // A schema or pattern is compiled by the engine's front end too: refused after the
        // request was accepted, so a stream carries the error (vLLM's guided-decoding check).
        var constraint: OutputConstraint?
        var rejection = engineRejection(request, prompts: prompts)
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

        acceptedRequests[request.model ?? configuration.primaryModelName, default: 0] += 1
        if let faults, faultGenerator.nextUnit() < faults.rate {
            switch faults.kind {
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
        let modelName = lora?.name ?? configuration.primaryModelName
        let responder: any GenerationSink
        if let responses {
            // vLLM names a response by its own `request_id` field (resp_ and a uuid4), not the header.
            responder = ResponsesResponder(
                request: request, responses: responses, writer: writer, driver: driver, id: "resp_" + randomHex(), created: created,
                modelName: modelName, promptTokens: prompts[0].count, maxOutputTokens: maxTokensPerPrompt[0])
        } else {
            responder = GenerationResponder(
                request: request, writer: writer, driver: driver, tokenizer: tokenizer, id: (kind == .completion ? "cmpl-" : "chatcmpl-") + requestID,
                created: created, modelName: modelName, promptTokenCounts: prompts.map(\.count),
                includeCachedTokens: configuration.enablePromptTokensDetails)
        }
        driver.serverLoad += 1
        var sequences: [EngineRequest] = []
        let stopTokenIDs = Set(request.stopTokenIDs)

        let stopStrings = StopStrings(request.stop)
        for (promptIndex, tokens) in prompts.enumerated() {
            for _ in 0..<request.n {
                // A request seed makes its output repeat exactly; without one, the server's
                // --seed and arrival order decide.
                // (seed -1 means "no seed", as in vLLM.)
                let seed = request.seed.flatMap { $0 == -1 ? nil : UInt64(bitPattern: Int64($0)) &+ UInt64(sequences.count) }
                // Greedy decoding is a function of the weights and the prompt alone: the same
                // prompt to the same model (or adapter) says the same thing on any pod.
                let greedySeed = request.isGreedy ? Self.greedySeed(prompt: tokens, model: lora?.name ?? setup.model.huggingFaceID) : nil
                var sequenceGenerator = SplitMix64(seed: greedySeed ?? seed ?? generator.next())
                let output = constraint?.draw(using: &sequenceGenerator)
                let plan = OutputPlan(
                    limits: .init(maxTokens: maxTokensPerPrompt[promptIndex], minTokens: request.minTokens, ignoreEOS: request.ignoreEOS,
                                  stop: stopStrings, stopTokenIDs: stopTokenIDs,
                                  includeStopStringInOutput: request.includeStopStringInOutput),
                    lengthDistribution: setup.model.outputLength, generator: &sequenceGenerator, tokenizer: tokenizer,
                    script: output.map { tokenizer.encode($0.text, addSpecialTokens: false) })
                let sequence = EngineRequest(
                    id: driver.makeRequestID(), promptTokens: tokens, plannedOutput: plan.tokens, finishReason: plan.finishReason,
                    lora: lora, arrival: now, maxTokensParam: maxTokensPerPrompt[promptIndex])
                responder.add(.init(plan: plan, sequenceID: sequence.id, promptIndex: promptIndex, output: output))
                sequences.append(sequence)
            }
        }
        responder.start()
        for sequence in sequences { driver.submit(sequence, sink: responder) }
        return responder
    }

    /// What vLLM's engine front end refuses after the request was accepted: too many logprobs,
    /// then token ids outside the vocabulary.
    private func engineRejection(_ request: GenerationRequest, prompts: [[Int]]) -> APIError? {
        if let count = request.logprobs, (count == -1 ? setup.model.vocab : count) > Self.maxLogprobs {
            return APIError.badRequest("Requested sample logprobs of \(count == -1 ? setup.model.vocab : count), which is greater than max allowed: \(Self.maxLogprobs)")
        }
        for tokens in prompts {
            if let highest = tokens.max(), highest > setup.model.vocab - 1 {
                return APIError.badRequest("Token id \(highest) is out of vocabulary")
            }
        }
        return nil
    }

    /// Understudy's own bound on one request's work, so that no request can stall or exhaust
    /// the process every in-process pod shares (a GPU server would queue it). Counted before
    /// anything is allocated, without overflow: the sequences (prompts × n), and the entries its
    /// output could hold (each sequence's max_tokens, and its prompt again with `echo`, times
    /// 1 + its top logprobs).
    private func checkBudget(_ request: GenerationRequest, maxTokensPerPrompt: [Int], promptLengths: [Int]) throws(APIError) {
        let budget = configuration.requestBudget
        let (sequences, sequencesOverflow) = maxTokensPerPrompt.count.multipliedReportingOverflow(by: request.n)
        guard !sequencesOverflow, sequences <= budget.maxSequences else {
            throw APIError.badRequest(
                "This request asks for \(request.n) completions of \(maxTokensPerPrompt.count) prompt(s); this server's limit is \(budget.maxSequences) sequences per request.",
                param: "n")
        }
        let perToken = 1 + min(max(request.logprobs ?? 0, 0), Self.maxLogprobs)
        var entries = 0
        for (maxTokens, promptLength) in zip(maxTokensPerPrompt, promptLengths) {
            // Both are below max_model_len here, so their sum cannot overflow.
            let (perSequence, overflow1) = (maxTokens + (request.echo ? promptLength : 0)).multipliedReportingOverflow(by: request.n)
            let (weighted, overflow2) = perSequence.multipliedReportingOverflow(by: perToken)
            let (sum, overflow3) = entries.addingReportingOverflow(weighted)
            guard !overflow1, !overflow2, !overflow3, sum <= budget.maxOutputEntries else {
                throw APIError.badRequest(
                    "This request could generate more than \(budget.maxOutputEntries) tokens (n × max_tokens over its prompts, with each prompt again when echoing, each token counted once more per top logprob); this server's limit per request is \(budget.maxOutputEntries). Lower max_tokens or n.",
                    param: "max_tokens")
            }
            entries = sum
        }
        // Every generated token is checked against every stop string.
        let (checks, overflow) = entries.multipliedReportingOverflow(by: request.stop.count)
        guard !overflow, checks <= budget.maxStopChecks else {
            throw APIError.badRequest(
                "This request's \(request.stop.count) stop strings would be checked after each of up to \(entries) tokens; this server's limit is \(budget.maxStopChecks) checks per request. Send fewer stop strings or lower max_tokens or n.",
                param: "stop")
        }
    }

    /// vLLM 0.11.0's context-length checks; returns the effective max_tokens (the request's,
    /// or the rest of the context when it gave none).
    private func checkLength(promptTokens: Int, maxTokens: Int?, kind: GenerationRequest.Kind) throws(APIError) -> Int {
        let maxModelLen = setup.engineConfig.maxModelLen
        switch kind {
        case .completion:
            // The renderer allows max_model_len − (max_tokens or 0) prompt tokens and says so.
            // Python's integers do not overflow: a max_tokens below −(Int.max − max_model_len)
            // leaves a limit no prompt reaches, and the sampling check refuses it next.
            let (limit, overflow) = maxModelLen.subtractingReportingOverflow(maxTokens ?? 0)
            if !overflow, promptTokens > limit {
                throw APIError.badRequest("This model's maximum context length is \(limit) tokens. However, your request has \(promptTokens) input tokens. Please reduce the length of the input messages.")
            }
        case .chat:
            if promptTokens >= maxModelLen {
                throw APIError.badRequest("This model's maximum context length is \(maxModelLen) tokens. However, your request has \(promptTokens) input tokens. Please reduce the length of the input messages. None")
            }
            if let requested = maxTokens, requested > maxModelLen - promptTokens {
                throw APIError.badRequest("'max_tokens' or 'max_completion_tokens' is too large: \(requested). This model's maximum context length is \(maxModelLen) tokens and your request has \(promptTokens) input tokens (\(requested) > \(maxModelLen) - \(promptTokens)). None")
            }
        }
        return min(maxTokens ?? Int.max, maxModelLen - promptTokens)
    }

    /// The adapter a `model` names, nil for the base model; 404 for anything else.
    private func resolveModel(_ model: String?) throws(APIError) -> LoRAAdapter? {
        guard let model, !model.isEmpty else { return nil }
        // Like vLLM, --served-model-name replaces --model as the base model's name.
        let baseNames = configuration.servedModelNames.isEmpty ? [configuration.model] : configuration.servedModelNames
        if baseNames.contains(model) { return nil }
        if let entry = adapters.first(where: { $0.name == model }) { return entry.adapter }
        throw APIError.notFound("The model `\(model)` does not exist.")
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
        for name in configuration.servedModelNames.isEmpty ? [configuration.model] : configuration.servedModelNames {
            cards.append((name, configuration.model, nil, setup.engineConfig.maxModelLen))
        }
        for entry in adapters { cards.append((entry.name, entry.path, entry.parent, nil)) }
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
        _ = try resolveModel(try reader.string("model"))
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
        _ = try resolveModel(try reader.string("model"))
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
        let name = try reader.string("lora_name") ?? ""
        let path = try reader.string("lora_path") ?? ""
        guard !name.isEmpty, !path.isEmpty else {
            throw APIError(status: 400, type: "InvalidUserInput", message: "Both 'lora_name' and 'lora_path' must be provided.")
        }
        guard !adapters.contains(where: { $0.name == name }) else {
            throw APIError(status: 400, type: "InvalidUserInput", message: "The lora adapter '\(name)' has already been loaded.")
        }
        guard setup.engineConfig.maxLoras > 0 else {
            throw APIError.badRequest("Call to add_lora method failed: LoRA is not enabled. Use --enable-lora to enable LoRA.")
        }
        let adapter = LoRAAdapter(name: name, bytes: setup.model.loraAdapterBytes(rank: configuration.maxLoRARank))
        adapters.append((name, path, configuration.primaryModelName, adapter))
        driver.cacheAdapter(name)
        return "Success: LoRA adapter '\(name)' added successfully."
    }

    private func unloadAdapter(_ body: ByteBuffer) throws(APIError) -> String {
        let reader = FieldReader(body: try parseBody(body))
        let name = try reader.string("lora_name") ?? ""
        guard !name.isEmpty else {
            throw APIError(status: 400, type: "InvalidUserInput", message: "'lora_name' needs to be provided to unload a LoRA adapter.")
        }
        guard let index = adapters.firstIndex(where: { $0.name == name }) else {
            throw APIError(status: 404, type: "NotFoundError", message: "The lora adapter '\(name)' cannot be found.")
        }
        // vLLM 0.11 only forgets the name; the engine keeps the weights until they are evicted.
        adapters.remove(at: index)
        return "Success: LoRA adapter '\(name)' removed successfully."
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

    /// The seed of greedy output: a hash of the prompt's token ids under the model's name.
    static func greedySeed(prompt: [Int], model: String) -> UInt64 {
        prompt.withUnsafeBytes { XXHash64.hash($0, seed: XXHash64.hash(Array(model.utf8))) }
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
