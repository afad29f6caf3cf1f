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

    /// `headers` without the dropped ones and those the message's `Connection` header names as
    /// hop-by-hop (RFC 9110 §7.6.1), plus `extra`.
    func apply(_ headers: HTTPHeaders, adding extra: [(String, String)] = []) -> HTTPHeaders {
        var kept = HTTPHeaders()
        kept.reserveCapacity(headers.count + extra.count)
        let named = headers.contains(name: "connection") ? Self.connectionOptions(headers) : nil
        for (name, value) in headers where !drops(name) {
            if let named, named.drops(name) { continue }
            kept.add(name: name, value: value)
        }
        for (name, value) in extra { kept.add(name: name, value: value) }
        return kept
    }

    /// The header names listed in `Connection` (its options other than close and keep-alive),
    /// except the ones a message cannot do without: `Connection: host` must not strip the Host
    /// an HTTP/1.1 upstream requires.
    private static func connectionOptions(_ headers: HTTPHeaders) -> HeaderFilter? {
        let names = headers[canonicalForm: "connection"].map { String($0).lowercased() }.filter { !kept.contains($0) }
        return names.isEmpty ? nil : HeaderFilter(names)
    }

    private static let kept: Set<String> = ["close", "keep-alive", "host", "content-length", "content-type"]

    /// Hop-by-hop headers (RFC 9110 §7.6.1), which describe one connection, not the message.
    static let hopByHop = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"]

    /// Headers only the gateway sets on a response: an upstream's are dropped, not duplicated.
    static let gatewayResponseHeaders = ["x-gateway-destination-endpoint-served", "x-envoy-attempt-count"]

    /// What the gateway drops from a request: hop-by-hop headers, `expect` (answered here),
    /// `content-length` (set again for the forwarded body), `proxy-authorization` (credentials
    /// for this proxy, not the pod's) and GIE's control headers, which steer the picker and
    /// are not forwarded.
    static let request = HeaderFilter(hopByHop + [
        "expect", "content-length", "proxy-authorization", "x-gateway-inference-objective", "x-gateway-model-name-rewrite",
        "x-gateway-destination-endpoint-subset", "x-gateway-inference-fairness-id",
    ])

    static let response = HeaderFilter(hopByHop + gatewayResponseHeaders)

    /// A response whose body the gateway rewrites also loses its length.
    static let rewrittenResponse = HeaderFilter(hopByHop + gatewayResponseHeaders + ["content-length"])
}
