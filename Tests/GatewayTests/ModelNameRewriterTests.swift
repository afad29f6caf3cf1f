@testable import Gateway
import NIOCore
import Testing

@Suite struct ModelNameRewriterTests {
    /// Feeds `text` in chunks of every size from 1 to its length and checks each result.
    func rewriteInChunks(_ text: String, target: String, client: String) -> Set<String> {
        let bytes = Array(text.utf8)
        var results: Set<String> = []
        for size in 1...bytes.count {
            var rewriter = ModelNameRewriter(target: target, client: client)
            var out = ByteBuffer()
            for start in stride(from: 0, to: bytes.count, by: size) {
                var piece = rewriter.feed(ByteBuffer(bytes: bytes[start..<min(start + size, bytes.count)]))
                out.writeBuffer(&piece)
            }
            var tail = rewriter.finish()
            out.writeBuffer(&tail)
            results.insert(String(buffer: out))
        }
        return results
    }

    @Test func rewritesCompactAndSpacedFormsWhereverChunksSplit() {
        let stream = #"data: {"id":"x","model":"llama-v2","choices":[{"text":"said \"model\":\"llama-v2\""}]}"# + "\n\n"
            + #"data: {"model": "llama-v2"}"# + "\n\ndata: [DONE]\n\n"
        let expected = #"data: {"id":"x","model":"assistant","choices":[{"text":"said \"model\":\"llama-v2\""}]}"# + "\n\n"
            + #"data: {"model": "assistant"}"# + "\n\ndata: [DONE]\n\n"
        #expect(rewriteInChunks(stream, target: "llama-v2", client: "assistant") == [expected])
    }

    @Test func leavesOtherModelsAndPrefixesAlone() {
        let body = #"{"model":"llama-v22","x":"\"","model":"llama-v"}"#
        #expect(rewriteInChunks(body, target: "llama-v2", client: "a") == [body])
    }
}
