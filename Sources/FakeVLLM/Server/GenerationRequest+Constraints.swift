import InferenceAPI

/// What a request says its output must be: structured outputs (`response_format`, vLLM's
/// `structured_outputs`, the older `guided_*` fields) and tool calls, read as vLLM 0.11.0 reads
/// them. Whether the emulator can honour a constraint is decided when it is compiled
/// (`OutputConstraint`).
extension GenerationRequest {
    enum OutputSpec: Equatable {
        case jsonSchema(JSONValue)
        /// Any JSON object (`json_object`).
        case jsonObject
        case regex(String)
        case choice([String])
        case grammar(String)
        case structuralTag
    }

    enum ToolMode: Equatable {
        /// The model decides (`tool_choice: "auto"`, needs `--enable-auto-tool-choice`).
        case auto
        /// It must call one of the tools.
        case required
        /// It must call this one.
        case named(String)
    }

    /// A function tool the request offers.
    struct Tool: Equatable {
        var name: String
        var parameters: JSONValue
    }

    /// The function tools of a chat request (already type-checked by `checkStructure`).
    static func tools(_ body: JSONValue) -> [Tool] {
        guard case .array(let items)? = body["tools"] else { return [] }
        return items.compactMap { item in
            guard let name = item["function"]?["name"]?.string else { return nil }
            let parameters = item["function"]?["parameters"]
            return Tool(name: name, parameters: parameters == nil || parameters == .null ? .object([:]) : parameters!)
        }
    }

    /// The structured-output constraint, if any: `structured_outputs`, else the deprecated
    /// `guided_*` fields, else `response_format` — vLLM 0.11.0's precedence.
    static func outputSpec(_ body: JSONValue) throws(APIError) -> OutputSpec? {
        if case .object(let fields)? = body["structured_outputs"] {
            let kinds = ["json", "regex", "choice"].filter { fields[$0] != nil && fields[$0] != .null }
            if kinds.count > 1 {
                throw APIError.validation(
                    kind: "value_error", location: ["body"],
                    message: "Value error, You can only use one kind of constraints for structured outputs ('json', 'regex' or 'choice').", input: body)
            }
            let set = ["json", "regex", "choice", "grammar", "json_object", "structural_tag"].filter { key in
                guard let value = fields[key], value != .null else { return false }
                return key != "json_object" || value == .bool(true)
            }
            if set.count > 1 {
                throw APIError.validation(
                    kind: "value_error", location: ["body", "structured_outputs"],
                    message: "Value error, You can only use one kind of structured outputs constraint but multiple are specified: \(APIError.pythonRepr(body["structured_outputs"]))",
                    input: body["structured_outputs"])
            }
            if let spec = try spec(json: fields["json"], regex: fields["regex"], choice: fields["choice"], grammar: fields["grammar"]) { return spec }
            if fields["json_object"] == .bool(true) { return .jsonObject }
            if let tag = fields["structural_tag"], tag != .null { return .structuralTag }
            return nil
        }
        let guided = ["guided_json", "guided_regex", "guided_choice", "guided_grammar"].filter { body[$0] != nil && body[$0] != .null }
        if guided.count > 1 {
            throw APIError.badRequest("You can only use one kind of structured outputs constraint but multiple are specified: \(APIError.pythonRepr(body))")
        }
        if let spec = try spec(json: body["guided_json"], regex: body["guided_regex"], choice: body["guided_choice"], grammar: body["guided_grammar"]) {
            return spec
        }
        guard let format = body["response_format"], case .string(let type)? = format["type"] else { return nil }
        switch type {
        case "json_object": return .jsonObject
        case "json_schema":
            guard let schema = format["json_schema"]?["schema"] else {
                throw APIError.validation(
                    kind: "missing", location: ["body", "response_format", "function-wrap[__log_extra_fields__()]", "json_schema"],
                    message: "Field required", input: format)
            }
            return .jsonSchema(schema)
        case "structural_tag": return .structuralTag
        default: return nil  // "text": no constraint
        }
    }

    private static func spec(json: JSONValue?, regex: JSONValue?, choice: JSONValue?, grammar: JSONValue?) throws(APIError) -> OutputSpec? {
        switch json {
        case nil, .null?: break
        case .string(let text)?:
            // A schema may be sent as JSON text. vLLM's error, word for word, carries no parse detail.
            guard let schema = try? JSONValue.parse(text) else { throw APIError.badRequest("Grammar error: Invalid JSON schema: \(text)") }
            return .jsonSchema(schema)
        case let schema?: return .jsonSchema(schema)
        }
        if case .string(let pattern)? = regex { return .regex(pattern) }
        if case .array(let items)? = choice {
            let options = items.compactMap(\.string)
            guard options.count == items.count, !options.isEmpty else { throw APIError.badRequest("Structured outputs `choice` must be a non-empty list of strings") }
            return .choice(options)
        }
        if case .string(let text)? = grammar { return .grammar(text) }
        return nil
    }
}
