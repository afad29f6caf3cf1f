/// GIE's `header-based-testing-filter` (v1.5.0, the same in llm-d-router), which its conformance
/// suite runs: only the endpoints named in `test-epp-endpoint-selection` stay, in the header's
/// order. An item `ip:port` names that endpoint; a bare IP names the last candidate with that IP
/// (one endpoint, not every data-parallel rank). One endpoint per IP is kept. No header, or
/// nothing named: no candidate, so the request gets 429.
struct HeaderBasedTestingFilter: Filter {
    static let header = "test-epp-endpoint-selection"
    var typeName: String { "header-based-testing-filter" }

    func filter(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Int] {
        guard let selection = request.endpointSelection else { return [] }
        var byIP: [Substring: Int] = [:]
        var byAddress: [String: Int] = [:]
        for index in indices {
            let address = candidates[index].endpoint.address
            byAddress[address] = index
            byIP[Self.host(of: Substring(address)) ?? Substring(address)] = index
        }
        var kept: [Int] = []
        var ips: Set<Substring> = []
        for var item in selection.split(separator: ",") {
            while item.first == " " { item.removeFirst() }
            while item.last == " " { item.removeLast() }
            guard !item.isEmpty else { continue }
            let ip: Substring
            let match: Int?
            if let host = Self.host(of: item) {
                (ip, match) = (host, byAddress[String(item)])
            } else {
                ip = item.hasPrefix("[") && item.hasSuffix("]") ? item.dropFirst().dropLast() : item
                match = byIP[ip]
            }
            if let match, ips.insert(ip).inserted { kept.append(match) }
        }
        return kept
    }

    /// The host of `host:port` (`[v6]:port` without brackets); nil for a bare IP.
    static func host(of address: Substring) -> Substring? {
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]"), address[address.index(after: close)...].hasPrefix(":") else { return nil }
            return address[address.index(after: address.startIndex)..<close]
        }
        guard let colon = address.lastIndex(of: ":"), address.firstIndex(of: ":") == colon, !address[address.index(after: colon)...].isEmpty else {
            return nil
        }
        return address[..<colon]
    }
}
