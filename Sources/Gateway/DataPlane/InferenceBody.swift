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

    /// `header` looks up a request header by its lowercase name. The body is scanned, not
    /// parsed: nothing is built but the model and the first `prefixLimit` bytes of the prefix
    /// text (all the picker's prefix scorer reads), though all of it is checked.
    static func read(_ body: ByteBuffer, shape: Shape, prefixLimit: Int, header: (String) -> String?) -> Result<InferenceRequest, Unreadable> {
        let scanned: ScannedBody?
        do {
            scanned = try ScannedBody.scan(
                body, required: shape.required.member, textMember: shape.required.member,
                form: shape == .chatCompletions ? .compactJSON : .prompt, limit: prefixLimit)
        } catch {
            return .failure(Unreadable(message: "error unmarshaling request body: \(error)"))
        }
        guard let scanned else { return .failure(Unreadable(message: "request body is not a JSON object")) }
        guard scanned.hasRequired else { return .failure(Unreadable(message: shape.required.refusal)) }
        return .success(InferenceRequest(
            model: scanned.model, objectiveHeader: header("x-gateway-inference-objective"),
            modelRewriteHeader: header("x-gateway-model-name-rewrite"), prefixText: scanned.text,
            endpointSelection: header(HeaderBasedTestingFilter.header)))
    }
}
