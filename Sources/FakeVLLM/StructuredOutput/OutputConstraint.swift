import Foundation
import InferenceAPI

/// A request's constraint compiled once (its schema or pattern checked, or refused with a 400),
/// then drawn per sequence: the text the model writes and, for tool calls, where each call sits
/// in it, so that the answer can show the calls as vLLM's parsers do.
struct OutputConstraint {
    private enum Source {
        case schema(SchemaSampler)
        case regex(RegexSampler)
        case choice([String])
        /// The model calls tools: `auto` (vLLM's parser reads the calls back), `required` (a JSON
        /// array of calls) or a named tool (its arguments alone).
        case tools([(name: String, sampler: SchemaSampler)], mode: GenerationRequest.ToolMode, format: ToolCallFormat)
    }

    private let source: Source

    /// nil when the request constrains nothing (or asks `auto` tools after a tool's result,
    /// which a model answers in words).
    init?(_ request: GenerationRequest, toolCallParser: String?) throws(APIError) {
        func compile(_ schema: JSONValue) throws(APIError) -> SchemaSampler {
            do {
                return try SchemaSampler(schema: schema)
            } catch {
                throw APIError.badRequest(error.message)
            }
        }
        if let mode = request.toolMode, !request.tools.isEmpty {
            if mode == .auto && request.lastRole == "tool" { return nil }
            var offered = request.tools
            if case .named(let name) = mode { offered = offered.filter { $0.name == name } }
            var samplers: [(name: String, sampler: SchemaSampler)] = []
            for tool in offered {
                // A tool with no parameters takes an empty object.
                let parameters = tool.parameters == .object([:]) ? JSONValue.object(["type": "object", "properties": .object([:])]) : tool.parameters
                samplers.append((tool.name, try compile(parameters)))
            }
            source = .tools(samplers, mode: mode, format: toolCallParser.flatMap(ToolCallFormat.init(parser:)) ?? .hermes)
            return
        }
        switch request.outputSpec {
        case nil: return nil
        case .jsonSchema(let schema)?: source = .schema(try compile(schema))
        case .jsonObject?: source = .schema(try compile(.object(["type": "object"])))
        case .regex(let pattern)?:
            do {
                source = .regex(try RegexSampler(pattern: pattern))
            } catch {
                throw APIError.badRequest(error.message)
            }
        case .choice(let options)?: source = .choice(options)
        case .grammar?: throw APIError.badRequest("Structured outputs with a grammar are not emulated (json, regex, choice and json_object are)")
        case .structuralTag?: throw APIError.badRequest("Structured outputs with a structural tag are not emulated (json, regex, choice and json_object are)")
        }
    }

    /// One sequence's output, drawn with its generator (so greedy and seeded requests repeat).
    func draw(using generator: inout SplitMix64) -> ConstrainedOutput {
        switch source {
        case .schema(let sampler): return ConstrainedOutput(text: sampler.sample(using: &generator).jsonText(spaced: true))
        case .regex(let sampler): return ConstrainedOutput(text: sampler.sample(using: &generator))
        case .choice(let options): return ConstrainedOutput(text: options[Int(generator.next() % UInt64(options.count))])
        case .tools(let tools, let mode, let format):
            let (name, sampler) = tools[Int(generator.next() % UInt64(tools.count))]
            let arguments = sampler.sample(using: &generator)
            let argumentsText = arguments.jsonText(spaced: true)
            let id = "chatcmpl-tool-" + String(generator.next(), radix: 16) + String(generator.next(), radix: 16)
            switch mode {
            case .auto:
                let text = format.text([(name, arguments)])
                return ConstrainedOutput(text: text, calls: [.locate(id: id, name: name, arguments: argumentsText, in: text)], style: .parsed)
            case .required:
                let text = JSONValue.array([.object(["name": .string(name), "parameters": arguments])]).jsonText(spaced: true)
                return ConstrainedOutput(text: text, calls: [.locate(id: id, name: name, arguments: argumentsText, in: text)], style: .forced)
            case .named:
                let bytes = argumentsText.utf8.count
                return ConstrainedOutput(
                    text: argumentsText, calls: [ToolCall(id: id, name: name, arguments: argumentsText, nameEnd: 0, argumentsBytes: 0..<bytes)],
                    style: .forced)
            }
        }
    }
}

/// What one sequence writes under a constraint.
struct ConstrainedOutput {
    /// The model's own text (tool calls in its parser's format).
    var text: String
    var calls: [ToolCall] = []
    var style: ToolCallStyle = .parsed

    /// How the answer shows tool calls. vLLM 0.11.0 reads `auto` calls back with the parser
    /// (content null, finish "tool_calls"); `required` and named calls come from guided decoding
    /// (content "", the engine's finish reason — "tool_calls" only when streamed).
    enum ToolCallStyle { case parsed, forced }
}

/// One tool call as the client sees it, and where it is in the model's text.
struct ToolCall {
    var id: String
    var name: String
    /// The arguments as a JSON string, as the parser re-serialises them.
    var arguments: String
    /// UTF-8 offset in the text after which the call's name is known.
    var nameEnd: Int
    /// Where the arguments' JSON sits in the text; streamed as those bytes are generated.
    var argumentsBytes: Range<Int>

    /// Finds the call's name and arguments in the text (the arguments' JSON appears verbatim in
    /// every JSON-based format; pythonic calls reveal their arguments when the call ends).
    static func locate(id: String, name: String, arguments: String, in text: String) -> ToolCall {
        let bytes = Array(text.utf8)
        let nameBytes = Array(name.utf8)
        let argumentBytes = Array(arguments.utf8)
        let nameAt = firstIndex(of: nameBytes, in: bytes, from: 0) ?? 0
        let nameEnd = nameAt + nameBytes.count
        if let at = firstIndex(of: argumentBytes, in: bytes, from: nameEnd) {
            return ToolCall(id: id, name: name, arguments: arguments, nameEnd: nameEnd, argumentsBytes: at..<(at + argumentBytes.count))
        }
        return ToolCall(id: id, name: name, arguments: arguments, nameEnd: nameEnd, argumentsBytes: bytes.count..<bytes.count)
    }

    private static func firstIndex(of needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        for index in start...(haystack.count - needle.count) where haystack[index..<(index + needle.count)].elementsEqual(needle) {
            return index
        }
        return nil
    }

    /// The bytes of the arguments to send once `visible` bytes of the text are out, given `sent`
    /// of them already sent (for a pythonic call, all of them at its end); cut at a character
    /// boundary.
    func argumentsDelta(visible: Int, sent: Int, textLength: Int) -> ArraySlice<UInt8>? {
        let bytes = Array(arguments.utf8)
        var ready: Int
        if argumentsBytes.isEmpty {
            ready = visible >= textLength ? bytes.count : 0
        } else {
            ready = max(0, min(bytes.count, visible - argumentsBytes.lowerBound))
        }
        while ready < bytes.count, ready > sent, bytes[ready] & 0xC0 == 0x80 { ready -= 1 }
        guard ready > sent else { return nil }
        return bytes[sent..<ready]
    }
}
