import NIOHTTP1

/// Which headers a proxy drops when it forwards a message: a set of names matched without
/// regard to case and without allocating (headers pass through this on every request).
struct HeaderFilter {
    /// The names by length, lowercased.
    private let namesByLength: [Int: [[UInt8]]]

    init(_ names: [String]) {
        namesByLength = Dictionary(grouping: names.map { Array($0.lowercased().utf8) }, by: \.count)
    }

    func drops(_ name: String) -> Bool {
        guard let candidates = namesByLength[name.utf8.count] else { return false }
        return candidates.contains { candidate in
            zip(candidate, name.utf8).allSatisfy { expected, byte in
                expected == (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte)
            }
        }
    }

    /// `headers` without the dropped ones, plus `extra`.
    func apply(_ headers: HTTPHeaders, adding extra: [(String, String)] = []) -> HTTPHeaders {
        var kept = HTTPHeaders()
        kept.reserveCapacity(headers.count + extra.count)
        for (name, value) in headers where !drops(name) { kept.add(name: name, value: value) }
        for (name, value) in extra { kept.add(name: name, value: value) }
        return kept
    }

    /// Hop-by-hop headers (RFC 9110 §7.6.1), which describe one connection, not the message.
    static let hopByHop = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"]

    /// What the gateway drops from a request: hop-by-hop headers, `expect` (answered here),
    /// `content-length` (set again for the forwarded body) and GIE's control headers, which
    /// steer the picker and are not forwarded.
    static let request = HeaderFilter(hopByHop + [
        "expect", "content-length", "x-gateway-inference-objective", "x-gateway-model-name-rewrite",
        "x-gateway-destination-endpoint-subset", "x-gateway-inference-fairness-id",
    ])

    static let response = HeaderFilter(hopByHop)

    /// A response whose body the gateway rewrites also loses its length.
    static let rewrittenResponse = HeaderFilter(hopByHop + ["content-length"])
}
