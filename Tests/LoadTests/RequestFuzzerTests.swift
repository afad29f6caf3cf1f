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
        #expect(paths.isSuperset(of: ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize", "/health"]))
        #expect(unparsable > 50)
        #expect(notObjects > 20)
    }
}
