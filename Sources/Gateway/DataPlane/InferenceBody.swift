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

    /// A body of one of the two shapes, read as it arrives: scanned, not parsed (nothing is
    /// built but the model and the first `prefixLimit` bytes of the prefix text, all the
    /// picker's prefix scorer reads), though every byte is checked as JSON.
    struct Reading {
        let shape: Shape
        private var stream: ScannedBodyStream

        init(shape: Shape, prefixLimit: Int) {
            self.shape = shape
            stream = ScannedBodyStream(
                required: shape.required.member, textMember: shape.required.member,
                form: shape == .chatCompletions ? .compactJSON : .prompt, limit: prefixLimit)
        }

        mutating func read(_ piece: ByteBuffer) { stream.feed(piece) }

        /// The request, once all of `body` has been read. `header` looks up a request header by
        /// its lowercase name. A malformed body is parsed whole, only to say why, in the
        /// parser's words.
        mutating func finish(_ body: ByteBuffer, header: (String) -> String?) -> Result<InferenceRequest, Unreadable> {
            let scanned: ScannedBody
            switch stream.finish() {
            case .scanned(let body): scanned = body
            case .notAnObject: return .failure(Unreadable(message: "request body is not a JSON object"))
            case .malformed:
                do {
                    _ = try JSONValue.parse(body)
                    return .failure(Unreadable(message: "error unmarshaling request body"))
                } catch {
                    return .failure(Unreadable(message: "error unmarshaling request body: \(error)"))
                }
            }
            guard scanned.hasRequired else { return .failure(Unreadable(message: shape.required.refusal)) }
            return .success(InferenceRequest(
                model: scanned.model, objectiveHeader: header("x-gateway-inference-objective"),
                modelRewriteHeader: header("x-gateway-model-name-rewrite"), prefixText: scanned.text,
                endpointSelection: header(HeaderBasedTestingFilter.header)))
        }
    }

    /// The built-in proxy's `Reading`, fed by the connection as each piece of the body arrives.
    final class Reader: RequestBodyReader {
        var reading: Reading

        init(_ reading: Reading) { self.reading = reading }

        func read(_ piece: ByteBuffer) { reading.read(piece) }
    }
}
