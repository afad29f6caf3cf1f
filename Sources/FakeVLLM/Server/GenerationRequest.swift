import InferenceAPI

/// Which OpenAI API a generation request came through (their length checks differ).
public enum RequestKind: Sendable { case completion, chat }

/// A validated /v1/completions or /v1/chat/completions body: only the fields that change what
/// the emulator does or returns. Anything else a client sends is accepted and ignored, as
/// vLLM ignores unknown fields.
struct GenerationRequest {
    typealias Kind = RequestKind

    enum Prompt {
        case text(String)
        case tokens([Int])
    }

    var kind: Kind
    var model: String?
    /// One entry per prompt (a completions batch); chat has exactly one.
    var prompts: [Prompt]
    /// The requested max_tokens; nil means "the rest of the context" (chat's default, or an
    /// explicit null; completions default to 16 when the field is absent).
    var maxTokens: Int?
    var n = 1
    var stream = false
    var includeUsage = false
    var continuousUsageStats = false
    var stop: [String] = []
    var stopTokenIDs: [Int] = []
    var ignoreEOS = false
    var includeStopStringInOutput = false
    var minTokens = 0
    var seed: Int?
    var echo = false
    /// Top logprobs per generated token, or nil when none were asked for (completions'
    /// `logprobs: k`; chat's `logprobs: true` with `top_logprobs: k`).
    var logprobs: Int?
    // Sampling parameters that only need checking: the emulated output ignores them.
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    /// Greedy decoding: temperature 0, or only the most likely token (top_k 1).
    var isGreedy: Bool { temperature == 0 || topK == 1 }
    var minP: Double?
    var presencePenalty: Double?
    var frequencyPenalty: Double?
    var repetitionPenalty: Double?
    /// How the request asks for tool calls (chat with tools; nil for "none" or no tools).
    var toolMode: ToolMode?
    var tools: [Tool] = []
    /// What the output must match, if the request constrains it.
    var outputSpec: OutputSpec?
    /// A chat message carries an image, audio or video part.
    var hasMedia = false
    /// The role of the last chat message (a `tool` result is answered in words, not another call).
    var lastRole: String?

    /// Reads a body as vLLM's request model does: wrong types and the model validators'
    /// failures throw pydantic-style 400s. Sampling values are checked later, by
    /// `validateSampling`, in the order vLLM checks them (after the model and the length).
    init(_ body: JSONValue, kind: Kind) throws(APIError) {
        guard case .object = body else {
            throw APIError.validation(kind: "model_attributes_type", location: ["body"], message: "Input should be a valid dictionary or object to extract fields from", input: body)
        }
        let reader = FieldReader(body: body)
        self.kind = kind
        model = try reader.string("model")
        stream = try reader.bool("stream") ?? false
        if let options = body["stream_options"], options != .null {
            // vLLM's before-validator tests the raw value's Python truth, ahead of its type.
            guard stream || !Self.isTruthy(options) else {
                throw APIError.validation(kind: "value_error", location: ["body"], message: "Value error, Stream options can only be defined when `stream=True`.", input: body)
            }
            guard case .object(let fields) = options else {
                throw APIError.validation(kind: "model_attributes_type", location: ["body", "stream_options"], message: Self.notAnObject, input: options)
            }
            let optionReader = FieldReader(body: options, path: ["stream_options"])
            // include_usage defaults to True once stream_options is given; an explicit null is None.
            includeUsage = fields["include_usage"] == nil ? true : (try optionReader.bool("include_usage") ?? false)
            continuousUsageStats = try optionReader.bool("continuous_usage_stats") ?? false
        }
        if kind == .chat { toolMode = try Self.checkToolUsage(body) }
        try Self.checkStructure(body, kind: kind)
        if toolMode != nil { tools = Self.tools(body) }
        outputSpec = try Self.outputSpec(body)
        switch kind {
        case .completion:
            prompts = try Self.completionPrompts(body["prompt"])
            maxTokens = body["max_tokens"] == nil ? 16 : try reader.integer("max_tokens")
            logprobs = try reader.integer("logprobs")
            if let count = logprobs, count < 0 {
                throw APIError.validation(kind: "value_error", location: ["body"], message: "Value error, `logprobs` must be a positive value.", input: body)
            }
        case .chat:
            let chat = try Self.chatPrompt(body["messages"])
            prompts = [.text(chat.text)]
            hasMedia = chat.hasMedia
            lastRole = chat.lastRole
            // `max_completion_tokens or max_tokens`, with Python's truthiness.
            let completionTokens = try reader.integer("max_completion_tokens")
            let plainTokens = try reader.integer("max_tokens")
            maxTokens = completionTokens.flatMap { $0 == 0 ? nil : $0 } ?? plainTokens
            let wanted = try reader.bool("logprobs") ?? false
            let top = try reader.integer("top_logprobs")
            if let top {
                if top < 0 && top != -1 {
                    throw APIError.validation(kind: "value_error", location: ["body"], message: "Value error, `top_logprobs` must be a positive value or -1.", input: body)
                }
                if (top == -1 || top > 0) && !wanted {
                    throw APIError.validation(kind: "value_error", location: ["body"], message: "Value error, when using `top_logprobs`, `logprobs` must be set to true.", input: body)
                }
            }
            logprobs = wanted ? (top ?? 0) : nil
        }
        n = try reader.integer("n") ?? 1
        switch body["stop"] {
        case nil, .null?: break
        case .string(let text)?: stop = [text]
        case .array(let items)?:
            stop = try items.map { item throws(APIError) in
                guard case .string(let text) = item else { throw APIError.validation(kind: "string_type", location: ["body", "stop"], message: "Input should be a valid string", input: item) }
                return text
            }
        default: throw APIError.validation(kind: "string_type", location: ["body", "stop"], message: "Input should be a valid string", input: body["stop"])
        }
        stopTokenIDs = try reader.integerList("stop_token_ids") ?? []
        ignoreEOS = try reader.bool("ignore_eos") ?? false
        includeStopStringInOutput = try reader.bool("include_stop_str_in_output") ?? false
        minTokens = try reader.integer("min_tokens") ?? 0
        seed = try reader.integer("seed")
        echo = try reader.bool("echo") ?? false
        temperature = try reader.number("temperature")
        topP = try reader.number("top_p")
        topK = try reader.integer("top_k")
        minP = try reader.number("min_p")
        presencePenalty = try reader.number("presence_penalty")
        frequencyPenalty = try reader.number("frequency_penalty")
        repetitionPenalty = try reader.number("repetition_penalty")
    }

    /// pydantic's message for a model-typed field given something else (FastAPI validates with
    /// `from_attributes`).
    static let notAnObject = "Input should be a valid dictionary or object to extract fields from"

    /// vLLM 0.11's `check_tool_usage` (a before-validator, so ahead of the fields' types);
    /// returns the tool mode. Where vLLM's validator itself fails on a malformed `tools` (a 500
    /// there), the fields' checks that follow answer instead.
    private static func checkToolUsage(_ body: JSONValue) throws(APIError) -> ToolMode? {
        func fail(_ message: String) -> APIError {
            APIError.validation(kind: "value_error", location: ["body"], message: "Value error, " + message, input: body)
        }
        let tools = body["tools"]
        var choice = body["tool_choice"]
        if choice == nil, let tools, isTruthy(tools) { choice = .string("auto") }
        guard let choice, choice != .null, choice != .string("none") else { return nil }
        guard let tools, tools != .null else { throw fail("When using `tool_choice`, `tools` must be set.") }
        switch choice {
        case .string("auto"): return .auto
        case .string("required"): return .required
        case .object:
            let usage = #"Correct usage: `{"type": "function", "function": {"name": "my_function"}}`"#
            guard let function = choice["function"], case .object = function else {
                throw fail("Invalid value for `function`: `\(APIError.pythonRepr(choice["function"]))` in `tool_choice`! \(usage)")
            }
            guard let name = function["name"] else { throw fail("Expected field `name` in `function` in `tool_choice`! \(usage)") }
            guard case .string(let text) = name, !text.isEmpty else {
                throw fail("Invalid `name` in `function`: `\(APIError.pythonRepr(name))` in `tool_choice`! \(usage)")
            }
            if case .array(let items) = tools, items.allSatisfy({ $0["function"]?["name"] != nil }),
               !items.contains(where: { $0["function"]?["name"] == name }) {
                throw fail("The tool specified in `tool_choice` does not match any of the specified `tools`")
            }
            return .named(text)
        default:
            let shown: String
            if case .string(let text) = choice { shown = text } else { shown = APIError.pythonRepr(choice) }
            throw fail(#"Invalid value for `tool_choice`: \#(shown)! Only named tools, "none", "auto" or "required" are supported."#)
        }
    }

    /// The types of the structured fields vLLM's request models declare and the emulator
    /// otherwise ignores: `tools` (a list of function tools), `response_format`,
    /// `structured_outputs`. pydantic reports every failing list item.
    private static func checkStructure(_ body: JSONValue, kind: Kind) throws(APIError) {
        var issues: [APIError.ValidationIssue] = []
        if kind == .chat, let tools = body["tools"], tools != .null {
            if case .array(let items) = tools {
                for (index, item) in items.enumerated() {
                    let at: [APIError.ValidationIssue.Step] = ["body", "tools", .index(index)]
                    guard case .object = item else {
                        issues.append(.init(kind: "model_attributes_type", location: at, message: notAnObject, input: item))
                        continue
                    }
                    if let type = item["type"], type != .string("function") {
                        issues.append(.init(kind: "literal_error", location: at + ["type"], message: "Input should be 'function'", input: type))
                    }
                    switch item["function"] {
                    case nil:
                        issues.append(.init(kind: "missing", location: at + ["function"], message: "Field required", input: item))
                    case .object?:
                        switch item["function"]?["name"] {
                        case .string?: break
                        case nil: issues.append(.init(kind: "missing", location: at + ["function", "name"], message: "Field required", input: item["function"]))
                        case let other?: issues.append(.init(kind: "string_type", location: at + ["function", "name"], message: "Input should be a valid string", input: other))
                        }
                    case let other?:
                        issues.append(.init(kind: "model_attributes_type", location: at + ["function"], message: notAnObject, input: other))
                    }
                }
            } else {
                issues.append(.init(kind: "list_type", location: ["body", "tools"], message: "Input should be a valid list", input: tools))
            }
        }
        if let format = body["response_format"], format != .null {
            // A union of ResponseFormat and StructuralTagResponseFormat: one error per member,
            // each under the wrap validator both models carry.
            if case .object = format {
                if let type = format["type"], ![.string("text"), .string("json_object"), .string("json_schema"), .string("structural_tag")].contains(type) {
                    issues.append(.init(
                        kind: "literal_error", location: ["body", "response_format", "function-wrap[__log_extra_fields__()]", "type"],
                        message: "Input should be 'text', 'json_object' or 'json_schema'", input: type))
                } else if format["type"] == nil {
                    issues.append(.init(
                        kind: "missing", location: ["body", "response_format", "function-wrap[__log_extra_fields__()]", "type"],
                        message: "Field required", input: format))
                }
            } else {
                let at: [APIError.ValidationIssue.Step] = ["body", "response_format", "function-wrap[__log_extra_fields__()]"]
                issues.append(.init(kind: "model_attributes_type", location: at, message: notAnObject, input: format))
                issues.append(.init(kind: "model_attributes_type", location: at, message: notAnObject, input: format))
            }
        }
        if let outputs = body["structured_outputs"], outputs != .null, outputs.typeName != "object" {
            issues.append(.init(
                kind: "dataclass_type", location: ["body", "structured_outputs"],
                message: "Input should be a dictionary or an instance of StructuredOutputsParams", input: outputs))
        }
        if !issues.isEmpty { throw APIError.validation(issues) }
    }

    /// Python's truth of a JSON value (what vLLM's `if data.get(...)` tests).
    static func isTruthy(_ value: JSONValue) -> Bool {
        switch value {
        case .null: false
        case .bool(let flag): flag
        case .integer(let number): number != 0
        case .double(let number): number != 0
        case .string(let text): !text.isEmpty
        case .array(let items): !items.isEmpty
        case .object(let fields): !fields.isEmpty
        }
    }

    /// vLLM's `SamplingParams` checks, in its order, for the effective max_tokens.
    func validateSampling(maxTokens: Int, maxN: Int) throws(APIError) {
        func fail(_ message: String) -> APIError { APIError.badRequest(message) }
        func python(_ value: Double) -> String { String(value) }
        guard n >= 1 else { throw fail("n must be at least 1, got \(n).") }
        guard n <= maxN else {
            throw fail("n must be at most \(maxN), got \(n). To increase this limit, set the VLLM_MAX_N_SEQUENCES environment variable.")
        }
        if let value = presencePenalty, !(-2...2).contains(value) { throw fail("presence_penalty must be in [-2, 2], got \(python(value)).") }
        if let value = frequencyPenalty, !(-2...2).contains(value) { throw fail("frequency_penalty must be in [-2, 2], got \(python(value)).") }
        if let value = repetitionPenalty, value <= 0 { throw fail("repetition_penalty must be greater than zero, got \(python(value)).") }
        if let value = temperature, value < 0 { throw fail("temperature must be non-negative, got \(python(value)).") }
        if let value = topP, !(value > 0 && value <= 1) { throw fail("top_p must be in (0, 1], got \(python(value)).") }
        if let value = topK, value < -1 { throw fail("top_k must be 0 (disable), or at least 1, got \(value).") }
        if let value = minP, !(0...1).contains(value) { throw fail("min_p must be in [0, 1], got \(python(value)).") }
        guard maxTokens >= 1 else { throw fail("max_tokens must be at least 1, got \(maxTokens).") }
        guard minTokens >= 0 else { throw fail("min_tokens must be greater than or equal to 0, got \(minTokens).") }
        guard minTokens <= maxTokens else { throw fail("min_tokens must be less than or equal to max_tokens=\(maxTokens), got \(minTokens).") }
        if stop.contains(where: \.isEmpty) { throw fail("stop cannot contain an empty string.") }
        // vLLM raises temperatures in (0, 0.01) to 0.01, so only 0 means greedy.
        if temperature == 0, n > 1 { throw fail("n must be 1 when using greedy sampling, got \(n).") }
    }

    private static func completionPrompts(_ value: JSONValue?) throws(APIError) -> [Prompt] {
        switch value {
        case nil, .null?:
            throw APIError.validation(kind: "value_error", location: ["body"], message: "Value error, Either prompt or prompt_embeds must be provided and non-empty.", input: nil)
        case .string(let text)?:
            return [.text(text)]
        case .array(let items)?:
            guard let first = items.first else {
                throw APIError.validation(kind: "value_error", location: ["body"], message: "Value error, Either prompt or prompt_embeds must be provided and non-empty.", input: nil)
            }
            switch first {
            case .string:
                return try items.map { item throws(APIError) in
                    guard case .string(let text) = item else { throw invalidPrompt() }
                    return .text(text)
                }
            case .integer:
                return [.tokens(try tokenList(items))]
            case .array:
                return try items.map { item throws(APIError) in
                    guard case .array(let tokens) = item, !tokens.isEmpty else { throw invalidPrompt() }
                    return .tokens(try tokenList(tokens))
                }
            default:
                throw invalidPrompt()
            }
        default:
            throw invalidPrompt()
        }
    }

    private static func tokenList(_ items: [JSONValue]) throws(APIError) -> [Int] {
        try items.map { item throws(APIError) in
            guard case .integer(let id) = item, id >= 0 else { throw invalidPrompt() }
            return id
        }
    }

    private static func invalidPrompt() -> APIError {
        APIError.validation(kind: "string_type", location: ["body", "prompt"], message: "Input should be a valid string, a list of strings, a list of token ids or a list of token-id lists", input: nil)
    }

    /// Renders messages with a simple role-tagged template ("role: content" lines, then the
    /// assistant's turn); a real chat template adds a handful of special tokens per message.
    private static func chatPrompt(_ value: JSONValue?) throws(APIError) -> (text: String, hasMedia: Bool, lastRole: String?) {
        guard case .array(let messages)? = value else {
            throw APIError.validation(kind: value == nil ? "missing" : "list_type", location: ["body", "messages"], message: value == nil ? "Field required" : "Input should be a valid list", input: value)
        }
        var text = ""
        var hasMedia = false
        for (index, message) in messages.enumerated() {
            guard case .string(let role)? = message["role"] else {
                throw APIError.validation([.init(kind: "missing", location: ["body", "messages", .index(index), "role"], message: "Field required", input: message)])
            }
            text += role + ": "
            switch message["content"] {
            case .string(let content)?: text += content
            case .array(let parts)?:
                for (partIndex, part) in parts.enumerated() {
                    guard let partText = try contentPartText(part, message: index, part: partIndex) else {
                        hasMedia = true
                        continue
                    }
                    text += partText
                }
            case nil, .null?: break
            default: throw APIError.validation([.init(kind: "string_type", location: ["body", "messages", .index(index), "content"], message: "Input should be a valid string", input: message["content"])])
            }
            text += "\n"
        }
        return (text + "assistant: ", hasMedia, messages.last?["role"]?.string)
    }
}

extension GenerationRequest {
    /// The text a message's content part adds to the prompt, or nil for media (an image, audio
    /// or video). vLLM parses parts after the request was accepted and refuses a malformed one
    /// with a 400 naming it; these messages are shorter than vLLM's (a pydantic dump of every
    /// part type it tried).
    static func contentPartText(_ part: JSONValue, message: Int, part index: Int) throws(APIError) -> String? {
        let at = "messages[\(message)].content[\(index)]"
        guard case .object = part, case .string(let type)? = part["type"] else {
            throw APIError.badRequest("Invalid content part at \(at): expected an object with a string `type`, got \(APIError.pythonRepr(part)).")
        }
        switch type {
        case "text", "input_text", "output_text", "refusal":
            let key = type == "refusal" ? "refusal" : "text"
            guard case .string(let text)? = part[key] else {
                throw APIError.badRequest("Invalid content part at \(at): a \(type) part needs a string `\(key)`.")
            }
            return text
        case "image_url", "image_pil", "image_embeds", "input_image", "audio_url", "input_audio", "video_url", "file":
            return nil
        default:
            throw APIError.badRequest("Unknown part type: \(type)")
        }
    }
}

/// Typed access to optional fields. A wrong type is a pydantic-style 400 naming the field.
struct FieldReader {
    let body: JSONValue
    var path: [String] = []

    func fail(_ key: String, _ kind: String, _ message: String) -> APIError {
        APIError.validation(kind: kind, location: ["body"] + path + [key], message: message, input: body[key])
    }

    func string(_ key: String) throws(APIError) -> String? {
        switch body[key] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw fail(key, "string_type", "Input should be a valid string")
        }
    }

    func integer(_ key: String) throws(APIError) -> Int? {
        switch body[key] {
        case nil, .null?: return nil
        case .integer(let value)?: return value
        case .double(let value)? where value.rounded() == value && abs(value) < 1e15: return Int(value)
        case .double?: throw fail(key, "int_from_float", "Input should be a valid integer, got a number with a fractional part")
        case .string(let text)?:
            // pydantic's lax mode accepts integer strings.
            if let value = Int(text) { return value }
            throw fail(key, "int_parsing", "Input should be a valid integer, unable to parse string as an integer")
        default: throw fail(key, "int_type", "Input should be a valid integer")
        }
    }

    func number(_ key: String) throws(APIError) -> Double? {
        switch body[key] {
        case nil, .null?: return nil
        case .integer(let value)?: return Double(value)
        case .double(let value)?: return value
        case .string(let text)?:
            if let value = Double(text) { return value }
            throw fail(key, "float_parsing", "Input should be a valid number, unable to parse string as a number")
        default: throw fail(key, "float_type", "Input should be a valid number")
        }
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        switch body[key] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        case .integer(let value)? where value == 0 || value == 1: return value == 1
        case .string(let text)?:
            switch text.lowercased() {
            case "true", "1", "yes", "on", "t", "y": return true
            case "false", "0", "no", "off", "f", "n": return false
            default: throw fail(key, "bool_parsing", "Input should be a valid boolean, unable to interpret input")
            }
        default: throw fail(key, "bool_type", "Input should be a valid boolean")
        }
    }

    func integerList(_ key: String) throws(APIError) -> [Int]? {
        switch body[key] {
        case nil, .null?: return nil
        case .array(let items)?:
            return try items.map { item throws(APIError) in
                guard case .integer(let value) = item else { throw fail(key, "int_type", "Input should be a valid integer") }
                return value
            }
        default: throw fail(key, "list_type", "Input should be a valid list")
        }
    }
}
