import InferenceAPI
import NIOCore

/// Rewrites `"model":"<target>"` back to `"model":"<client name>"` in a response body, compact
/// or spaced (`"model": "<target>"`), as GIE's EPP does after a target-model rewrite. Works on a
/// stream: bytes that could begin a match split across chunks are held back until the next
/// chunk (or `finish`) decides them, and nothing else is delayed. Inside a JSON string value
/// quotes are escaped, so a completion's text never matches.
struct ModelNameRewriter {
    private let patterns: [[UInt8]]
    private let replacements: [[UInt8]]
    private var pending: [UInt8] = []

    init(target: String, client: String) {
        var quotedTarget = ByteBuffer()
        quotedTarget.writeJSONString(target)
        var quotedClient = ByteBuffer()
        quotedClient.writeJSONString(client)
        let targetBytes = Array(quotedTarget.readableBytesView)
        let clientBytes = Array(quotedClient.readableBytesView)
        patterns = [Array(#""model":"#.utf8) + targetBytes, Array(#""model": "#.utf8) + targetBytes]
        replacements = [Array(#""model":"#.utf8) + clientBytes, Array(#""model": "#.utf8) + clientBytes]
    }

    /// The rewritten bytes that can be sent now.
    mutating func feed(_ chunk: ByteBuffer) -> ByteBuffer {
        var input = pending
        input.append(contentsOf: chunk.readableBytesView)
        pending = []
        var out = ByteBuffer()
        out.reserveCapacity(input.count + 16)
        var index = 0
        var copiedUpTo = 0
        scan: while index < input.count {
            guard input[index] == UInt8(ascii: "\"") else {
                index += 1
                continue
            }
            for (pattern, replacement) in zip(patterns, replacements) {
                let available = min(pattern.count, input.count - index)
                guard input[index..<(index + available)].elementsEqual(pattern[0..<available]) else { continue }
                if available < pattern.count {
                    // A possible match runs past this chunk: keep it for the next one.
                    out.writeBytes(input[copiedUpTo..<index])
                    pending = Array(input[index...])
                    return out
                }
                out.writeBytes(input[copiedUpTo..<index])
                out.writeBytes(replacement)
                index += pattern.count
                copiedUpTo = index
                continue scan
            }
            index += 1
        }
        out.writeBytes(input[copiedUpTo...])
        return out
    }

    /// Whatever was held back, at the end of the body.
    mutating func finish() -> ByteBuffer {
        defer { pending = [] }
        return ByteBuffer(bytes: pending)
    }
}
