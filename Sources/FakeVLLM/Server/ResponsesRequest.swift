import InferenceAPI

/// A /v1/responses body as vLLM 0.11.0 takes it for a model without the Harmony format: its
/// input becomes chat messages (`instructions` a system message first), its sampling fields the
/// chat request's, and what that server cannot do is refused in its words. The rest of the
/// pipeline (validation, length checks, the engine) is the chat completion's.
struct ResponsesRequest {
    /// The equivalent /v1/chat/completions body.
    var chatBody: JSONValue
    /// `max_output_tokens`, capped later by the room the prompt leaves (vLLM caps rather than refuses).
    var maxOutputTokens: Int?
    /// Echoed in the response object.
    var instructions: String?
    var temperature: Double?
    var topP: Double?

    init(_ body: JSONValue) throws(APIError) {
        guard case .object(let fields) = body else {
            throw APIError.validation(kind: "model_attributes_type", location: ["body"], message: GenerationRequest.notAnObject, input: body)
        }
        let reader = FieldReader(body: body)
        instructions = try reader.string("instructions")
        temperature = try reader.number("temperature")
        topP = try reader.number("top_p")
        maxOutputTokens = try reader.integer("max_output_tokens")
        if let previous = try reader.string("previous_response_id") {
            // No response store (VLLM_ENABLE_RESPONSES_API_STORE is off): nothing is ever found.
            throw APIError(status: 404, type: "invalid_request_error", message: "Response with id '\(previous)' not found.", param: nil)
        }
        let store = try reader.bool("store") ?? true
        if try reader.bool("background") ?? false {
            guard store else {
                throw APIError.validation(kind: "value_error", location: ["body"], message: "Value error, background can only be used when `store` is true", input: body)
            }
            throw APIError(
                status: 400, type: "invalid_request_error",
                message: "This vLLM engine does not support `store=True` and therefore does not support the background mode. To enable these features, set the environment variable `VLLM_ENABLE_RESPONSES_API_STORE=1` when launching the vLLM server.",
                param: nil)
        }
        if case .array(let tools)? = fields["tools"], !tools.isEmpty {
            throw APIError.badRequest("Tool use is not supported in Responses API without Harmony None")
        }
        var messages: [JSONValue] = []
        if let instructions { messages.append(.object(["role": "system", "content": .string(instructions)])) }
        switch fields["input"] {
        case .string(let text)?:
            messages.append(.object(["role": "user", "content": .string(text)]))
        case .array(let items)?:
            // Message items pass to the chat parser as they are; an item without a role is a user turn.
            for item in items {
                guard case .object(var message) = item else {
                    throw APIError.validation(kind: "model_attributes_type", location: ["body", "input"], message: GenerationRequest.notAnObject, input: item)
                }
                if message["role"] == nil { message["role"] = "user" }
                messages.append(.object(message))
            }
        case nil:
            throw APIError.validation(kind: "missing", location: ["body", "input"], message: "Field required", input: body)
        case let other?:
            throw APIError.validation(kind: "string_type", location: ["body", "input", "str"], message: "Input should be a valid string", input: other)
        }
        var chat: JSONObject = ["messages": .array(messages), "max_tokens": .null]
        for key in ["model", "stream", "temperature", "top_p", "seed", "user"] where fields[key] != nil {
            chat[key] = fields[key]
        }
        if let format = fields["text"]?["format"], let type = format["type"]?.string {
            switch type {
            case "json_object":
                // vLLM 0.11.0 raises NotImplementedError here, which reaches the client as a 500.
                throw APIError(status: 500, type: "Internal Server Error", message: "json_object is not supported", param: nil)
            case "json_schema":
                chat["structured_outputs"] = .object(["json": format["schema"] ?? .object([:])])
            default:
                break
            }
        }
        chatBody = .object(chat)
    }
}
