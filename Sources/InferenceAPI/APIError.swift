import NIOCore

/// An error that renders itself as OpenAI's (and vLLM's) error envelope:
/// `{"error":{"message":…,"type":…,"param":…,"code":<status>}}`.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The HTTP status, also written as `code`.
    public var status: Int
    /// vLLM's error class name: `BadRequestError`, `NotFoundError`, …
    public var type: String
    public var message: String
    public var param: String?

    public init(status: Int, type: String, message: String, param: String? = nil) {
        self.status = status
        self.type = type
        self.message = message
        self.param = param
    }

    public var description: String { "\(status) \(type): \(message)" }

    /// 400, the status of every request vLLM rejects as invalid.
    public static func badRequest(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 400, type: "BadRequestError", message: message, param: param)
    }

    /// 404 with `NotFoundError`, as for an unknown model or adapter.
    public static func notFound(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 404, type: "NotFoundError", message: message, param: param)
    }

    /// A request-schema failure as vLLM 0.11's FastAPI handler reports it: 400, type
    /// "Bad Request", and the message the Python repr of pydantic's error list, e.g.
    /// `[{'type': 'int_parsing', 'loc': ('body', 'max_tokens'), 'msg': '…', 'input': 'abc'}]`.
    public static func validation(kind: String, location: [String], message: String, input: JSONValue?) -> APIError {
        validation([ValidationIssue(kind: kind, location: location, message: message, input: input)])
    }

    /// Several schema failures at once, in pydantic's order (one per list item or union member).
    public static func validation(_ issues: [ValidationIssue]) -> APIError {
        let text = "[" + issues.map { issue in
            let loc = "(" + issue.location.map { $0.repr }.joined(separator: ", ") + (issue.location.count == 1 ? ",)" : ")")
            return "{'type': '\(issue.kind)', 'loc': \(loc), 'msg': '\(issue.message)', 'input': \(pythonRepr(issue.input))}"
        }.joined(separator: ", ") + "]"
        return APIError(status: 400, type: "Bad Request", message: text, param: nil)
    }

    /// One pydantic error: its type, where (field names and list indexes), message and input.
    public struct ValidationIssue: Sendable {
        /// A step of pydantic's `loc`: a field name (quoted) or a list index (bare).
        public enum Step: Sendable, ExpressibleByStringLiteral {
            case field(String)
            case index(Int)
            public init(stringLiteral value: String) { self = .field(value) }
            var repr: String {
                switch self {
                case .field(let name): "'\(name)'"
                case .index(let index): String(index)
                }
            }
        }

        public var kind: String
        public var location: [Step]
        public var message: String
        public var input: JSONValue?

        public init(kind: String, location: [Step], message: String, input: JSONValue?) {
            self.kind = kind
            self.location = location
            self.message = message
            self.input = input
        }

        public init(kind: String, location: [String], message: String, input: JSONValue?) {
            self.init(kind: kind, location: location.map { .field($0) }, message: message, input: input)
        }
    }

    /// Python's `repr` of a decoded JSON value, as it appears inside pydantic messages: keys in
    /// body order, strings quoted and escaped as Python quotes them.
    public static func pythonRepr(_ value: JSONValue?) -> String {
        switch value {
        case nil, .null?: return "None"
        case .bool(let flag)?: return flag ? "True" : "False"
        case .integer(let number)?: return String(number)
        case .double(let number)?: return String(number)
        case .string(let text)?: return pythonRepr(text)
        case .array(let items)?: return "[" + items.map { pythonRepr($0) }.joined(separator: ", ") + "]"
        case .object(let fields)?:
            return "{" + fields.map { pythonRepr($0.key) + ": " + pythonRepr($0.value) }.joined(separator: ", ") + "}"
        }
    }

    /// `repr(str)`: single quotes unless the text has a single quote and no double quote;
    /// backslash, the quote, \t \n \r and other control characters escaped.
    static func pythonRepr(_ text: String) -> String {
        let quote: Character = text.contains("'") && !text.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case _ where Character(scalar) == quote: out += "\\" + String(quote)
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value):
                let hex = String(scalar.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out.append(quote)
        return out
    }

    /// The envelope as Python's `json.dumps` writes it (spaces after separators, ASCII only):
    /// how vLLM sends an error inside a stream that has already started.
    public func pythonJSON() -> String {
        #"{"error": {"message": \#(Self.pythonJSONString(message)), "type": \#(Self.pythonJSONString(type)), "param": "#
            + (param.map(Self.pythonJSONString) ?? "null") + #", "code": \#(status)}}"#
    }

    /// A string as `json.dumps` quotes it: `\uXXXX` for control and non-ASCII characters.
    static func pythonJSONString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value > 0x7E:
                for unit in String(scalar).utf16 {
                    let hex = String(unit, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                }
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// The envelope as JSON bytes.
    public func body(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 96 + message.utf8.count)
        write(to: &buffer)
        return buffer
    }

    /// Appends the envelope to `buffer` (also used inside an SSE `data:` line).
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"error\":{\"message\":")
        buffer.writeJSONString(message)
        buffer.writeStaticString(",\"type\":")
        buffer.writeJSONString(type)
        buffer.writeStaticString(",\"param\":")
        buffer.writeJSONString(orNull: param)
        buffer.writeStaticString(",\"code\":")
        buffer.writeJSONInteger(status)
        buffer.writeStaticString("}}")
    }
}

/// Server-sent events framing as vLLM writes it: `data: <json>\n\n`, ending with `data: [DONE]`.
public enum SSE {
    public static let contentType = "text/event-stream; charset=utf-8"

    /// Starts a `data:` line; write the JSON payload next, then `endEvent`.
    public static func beginEvent(_ buffer: inout ByteBuffer) {
        buffer.writeStaticString("data: ")
    }

    public static func endEvent(_ buffer: inout ByteBuffer) {
        buffer.writeStaticString("\n\n")
    }

    /// The terminating event.
    public static func writeDone(_ buffer: inout ByteBuffer) {
        buffer.writeStaticString("data: [DONE]\n\n")
    }
}
