import InferenceAPI

/// How a model family writes a tool call in its text, which vLLM's `--tool-call-parser` reads
/// back into `tool_calls`. Clients see only the parsed calls; the text decides how many tokens a
/// call costs (usage, timing), so each parser's format is written as that family's models write it.
public enum ToolCallFormat: Sendable, Equatable {
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` (Hermes, Qwen 2.5/3).
    case hermes
    /// `{"name": …, "parameters": {…}}` (Llama 3.1/3.2 JSON tool calling), `;`-separated.
    case llamaJSON
    /// `[TOOL_CALLS][{"name": …, "arguments": {…}}]` (Mistral).
    case mistral
    /// `[name(key=value, …)]` (Llama 3.2/4 pythonic, Olmo).
    case pythonic

    /// vLLM 0.11.0's registered `--tool-call-parser` names.
    public static let parserNames = [
        "deepseek_v3", "deepseek_v31", "glm45", "granite", "granite-20b-fc", "hermes", "hunyuan_a13b", "internlm", "jamba",
        "kimi_k2", "llama3_json", "llama4_json", "llama4_pythonic", "longcat", "minimax", "mistral", "openai", "phi4_mini_json",
        "pythonic", "qwen3_coder", "qwen3_xml", "seed_oss", "step3", "xlam",
    ]

    /// The format for a parser name; nil for a name vLLM does not register. Parsers whose
    /// family writes calls in its own markup are written as Hermes's (similar length).
    public init?(parser: String) {
        guard Self.parserNames.contains(parser) else { return nil }
        switch parser {
        case "llama3_json", "llama4_json", "phi4_mini_json": self = .llamaJSON
        case "mistral": self = .mistral
        case "pythonic", "llama4_pythonic": self = .pythonic
        default: self = .hermes
        }
    }

    /// The model's text for these calls (name, arguments as JSON text).
    public func text(_ calls: [(name: String, arguments: JSONValue)]) -> String {
        switch self {
        case .hermes:
            return calls.map { "<tool_call>\n{\"name\": \(JSONValue.string($0.name).jsonText()), \"arguments\": \($0.arguments.jsonText(spaced: true))}\n</tool_call>" }
                .joined(separator: "\n")
        case .llamaJSON:
            return calls.map { "{\"name\": \(JSONValue.string($0.name).jsonText()), \"parameters\": \($0.arguments.jsonText(spaced: true))}" }
                .joined(separator: "; ")
        case .mistral:
            return "[TOOL_CALLS][" + calls.map { "{\"name\": \(JSONValue.string($0.name).jsonText()), \"arguments\": \($0.arguments.jsonText(spaced: true))}" }
                .joined(separator: ", ") + "]"
        case .pythonic:
            return "[" + calls.map { call in
                let arguments: [String]
                if case .object(let fields) = call.arguments {
                    arguments = fields.map { "\($0.key)=\(Self.python($0.value))" }
                } else {
                    arguments = []
                }
                return "\(call.name)(\(arguments.joined(separator: ", ")))"
            }.joined(separator: ", ") + "]"
        }
    }

    /// A JSON value as a Python literal, as pythonic tool calls write arguments.
    private static func python(_ value: JSONValue) -> String {
        switch value {
        case .null: "None"
        case .bool(let flag): flag ? "True" : "False"
        case .array(let items): "[" + items.map(python).joined(separator: ", ") + "]"
        case .object(let fields): "{" + fields.map { "\(JSONValue.string($0.key).jsonText()): \(python($0.value))" }.joined(separator: ", ") + "}"
        default: value.jsonText()
        }
    }
}
