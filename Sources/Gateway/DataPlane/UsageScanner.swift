import NIOCore

/// Token counts read from a response's `usage` as it passes (GIE's EPP parses them for its
/// token metrics): `prompt_tokens`, `completion_tokens` and `prompt_tokens_details.cached_tokens`,
/// the last values seen winning (a stream with `continuous_usage_stats` repeats them). Counts
/// split across two chunks are missed; they feed metrics only.
struct UsageScanner {
    struct Usage: Equatable {
        var promptTokens: Int
        var completionTokens: Int
        var cachedTokens: Int?
    }

    private(set) var usage: Usage?

    mutating func scan(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let prompt = Self.integer(after: Self.promptKey, in: bytes),
                  let completion = Self.integer(after: Self.completionKey, in: bytes) else { return }
            usage = Usage(promptTokens: prompt, completionTokens: completion, cachedTokens: Self.integer(after: Self.cachedKey, in: bytes))
        }
    }

    private static let promptKey = Array(#""prompt_tokens":"#.utf8)
    private static let completionKey = Array(#""completion_tokens":"#.utf8)
    private static let cachedKey = Array(#""cached_tokens":"#.utf8)

    /// The integer after the last occurrence of `key` (spaces allowed after the colon).
    static func integer(after key: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= key.count else { return nil }
        var start = bytes.count - key.count
        while start >= 0 {
            if bytes[start] == key[0], (0..<key.count).allSatisfy({ bytes[start + $0] == key[$0] }) {
                var index = start + key.count
                while index < bytes.count, bytes[index] == 0x20 { index += 1 }
                var value = 0
                var digits = 0
                while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39, digits < 18 {
                    value = value * 10 + Int(bytes[index] - 0x30)
                    index += 1
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            start -= 1
        }
        return nil
    }
}
