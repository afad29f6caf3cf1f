import Foundation
import Gateway

/// The endpoints file llm-d-router's `file-discovery` plugin reads (docs/ext-proc.md), so a real
/// endpoint picker runs against the fleet with no cluster: one entry per endpoint (a pod's
/// data-parallel ranks each their own), Ready endpoints only, as a Service's EndpointSlice
/// lists them. Its rules: the address an IPv4 literal, the port a quoted string (a bare number
/// fails the whole load), and the file replaced by renaming a new one over it (the plugin
/// watches the file with inotify and could read an in-place rewrite half-written).
public enum FileDiscovery {
    public static func yaml(_ endpoints: [DiscoveredEndpoint], namespace: String) -> String {
        let ready = endpoints.filter(\.ready)
        guard !ready.isEmpty else { return "endpoints: []\n" }
        var text = "endpoints:\n"
        for discovered in ready {
            guard let colon = discovered.endpoint.address.lastIndex(of: ":") else { continue }
            let address = discovered.endpoint.address[..<colon]
            let port = discovered.endpoint.address[discovered.endpoint.address.index(after: colon)...]
            text += "- name: \(KubernetesManifests.quoted(discovered.endpoint.podName))\n  namespace: \(KubernetesManifests.quoted(namespace))\n"
            text += "  address: \(KubernetesManifests.quoted(String(address)))\n  port: \(KubernetesManifests.quoted(String(port)))\n"
            if !discovered.labels.isEmpty {
                text += "  labels:\n"
                for (key, value) in discovered.labels.sorted(by: { $0.key < $1.key }) { text += "    \(KubernetesManifests.quoted(key)): \(KubernetesManifests.quoted(value))\n" }
            }
        }
        return text
    }

    /// Replaces `path` with the file for `endpoints`: written beside it, then renamed over it.
    public static func write(_ endpoints: [DiscoveredEndpoint], namespace: String, to path: String) throws {
        let temporary = path + ".next"
        try yaml(endpoints, namespace: namespace).write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, path) == 0 else { throw FleetError("cannot replace \(path): \(String(cString: strerror(errno)))") }
    }
}
