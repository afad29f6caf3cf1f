import NIOHTTP1

/// `Authorization: Bearer KEY`, compared in constant time (as vLLM compares digests), so the
/// time an answer takes does not tell how much of a guess was right.
public enum BearerToken {
    public static func matches(_ headers: HTTPHeaders, _ key: String) -> Bool {
        let given = headers.first(name: "authorization") ?? ""
        let parts = given.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        return constantTimeEqual(Array(parts[1].utf8), Array(key.utf8))
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference: UInt8 = a.count == b.count ? 0 : 1
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}
