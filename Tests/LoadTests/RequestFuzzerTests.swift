import InferenceAPI
import NIOCore
@testable import Load
import Testing

@Suite struct RequestFuzzerTests {
    @Test func theSameSeedSendsTheSameCasesAndAnotherSeedOthers() {
        func cases(_ seed: UInt64) -> [String] {
            var fuzzer = RequestFuzzer(seed: seed)
            return (0..<200).map { _ in
                let request = fuzzer.next()
                return "\(request.method) \(request.path) \(request.headers) " + String(buffer: request.body ?? ByteBuffer())
            }
        }
        #expect(cases(5) == cases(5))
        #expect(cases(5) != cases(6))
    }

    @Test func casesCoverTheRoutesAndBreakTheBodyInEveryWay() {
        var fuzzer = RequestFuzzer(seed: 1)
        var paths: Set<String> = []
        var unparsable = 0
        var notObjects = 0
        for _ in 0..<2000 {
            let request = fuzzer.next()
            paths.insert(request.path)
            guard let body = request.body else { continue }
            switch Result(catching: { try JSONValue.parse(body) }) {
            case .failure: unparsable += 1
            case .success(.object): break
            case .success: notObjects += 1
            }
        }
        #expect(paths.isSuperset(of: [
            "/v1/completions", "/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/tokenize", "/detokenize", "/health",
        ]))
        #expect(unparsable > 50)
        #expect(notObjects > 20)
    }

    @Test func casesAskForStructuredOutputsAndToolCallsAndBreakTheirSchemas() {
        var fuzzer = RequestFuzzer(seed: 3)
        var constrained = 0
        var toolChoices: Set<String> = []
        var schemas: [JSONValue] = []
        for _ in 0..<3000 {
            guard let body = fuzzer.next().body, let fields = try? JSONValue.parse(body) else { continue }
            let schema = fields["response_format"]?["json_schema"]?["schema"] ?? fields["structured_outputs"]?["json"]
                ?? fields["text"]?["format"]?["schema"]
            if let schema, schema != .object([:]) { schemas.append(schema) }
            if schema != nil || fields["structured_outputs"]?["regex"] != nil || fields["structured_outputs"]?["choice"] != nil {
                constrained += 1
            }
            if let choice = fields["tool_choice"] { toolChoices.insert(choice.string ?? "named") }
        }
        #expect(constrained > 100)
        #expect(toolChoices.isSuperset(of: ["none", "auto", "required", "named"]))
        // Most schemas are sent as made; the others had a keyword replaced.
        let pristine = schemas.first { candidate in schemas.filter { $0 == candidate }.count * 2 > schemas.count }
        #expect(pristine != nil)
        #expect(schemas.filter { $0 != pristine }.count > 10)
    }
}
