import InferenceAPI
import NIOCore

/// What the picker reads from an inference request's body (GIE's openai-parser): the `model`,
/// and the text prefix caching is judged on (a completion's prompt, or a chat's messages as
/// compact JSON). Both front ends read bodies here: the built-in proxy and ext_proc.
enum InferenceBody {
    /// The APIs whose bodies the picker reads, by path. Any other request goes to any endpoint
    /// unread, as llm-d-router's passthrough parser leaves them (GIE v1.5.0 read every body as a
    /// completion).
    enum Shape: Equatable {
        case completions, chatCompletions

        init?(path: Substring) {
            switch path.prefix(while: { $0 != "?" }) {
            case "/v1/completions": self = .completions
            case "/v1/chat/completions": self = .chatCompletions
            default: return nil
            }
        }

        /// The member the API cannot do without, and GIE's words when it is missing.
        var required: (member: String, refusal: String) {
            switch self {
            case .completions: ("prompt", "invalid completions request: must have prompt field")
            case .chatCompletions: ("messages", "invalid chat completions request: must have valid messages field")
            }
        }
    }

    /// Why a body cannot be routed: always GIE's BadRequest (400).
    struct Unreadable: Error, Equatable {
        var message: String
    }

    /// `header` looks up a request header by its lowercase name.
    static func read(_ body: ByteBuffer, shape: Shape, header: (String) -> String?) -> Result<InferenceRequest, Unreadable> {
        let value: JSONValue
        do {
            value = try JSONValue.parse(body)
        } catch {
            return .failure(Unreadable(message: "error unmarshaling request body: \(error)"))
        }
        guard case .object(let object) = value else {
            return .failure(Unreadable(message: "request body is not a JSON object"))
        }
        switch object[shape.required.member] {
        case nil, .null?, .string("")?, .array([])?: return .failure(Unreadable(message: shape.required.refusal))
        default: break
        }
        var model: String?
        if case .string(let name)? = object["model"] { model = name }
        var prefix = ""
        switch (shape, object[shape.required.member]) {
        case (.chatCompletions, let messages?):
            var buffer = ByteBuffer()
            buffer.writeJSON(messages)
            prefix = String(buffer: buffer)
        case (.completions, .string(let text)?):
            prefix = text
        case (.completions, .array(let items)?):
            prefix = items.compactMap { if case .string(let text) = $0 { text } else { nil } }.joined()
        case (.completions, _), (.chatCompletions, nil):
            break
        }
        return .success(InferenceRequest(
            model: model, objectiveHeader: header("x-gateway-inference-objective"),
            modelRewriteHeader: header("x-gateway-model-name-rewrite"), prefixText: prefix,
            endpointSelection: header(HeaderBasedTestingFilter.header)))
    }
}
