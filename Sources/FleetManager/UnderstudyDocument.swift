// FleetManager brings up fleets of emulated pods and their gateway and breaks them on purpose:
// fleet and scenario files, the pods' lifecycle, the registry, the admin API, chaos, and the
// fleet in virtual time. The only module that sees both FakeVLLM and Gateway.

import Foundation
import Gateway
import Yams

/// What understudy's own files (`kind: Fleet`, `kind: Scenario`) share: read from disk, YAML,
/// `apiVersion`, `kind` and a DNS-label `metadata.name`, refused as the API server words it.
public enum UnderstudyDocument {
    static func read(file: String) throws(ConfigError) -> String {
        do {
            return try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigError(file: file, document: 0, object: "", field: "", reason: "cannot read the file: \(error.localizedDescription)")
        }
    }

    /// The `kind` a file's first document declares, if it can be read as YAML and names one.
    public static func kind(file: String) -> String? {
        // Unreadable or not YAML: nil, and loading it as a fleet file then says why.
        guard let text = try? read(file: file), let root = try? Yams.load(yaml: text) as? [String: Any] else { return nil }
        return root["kind"] as? String
    }

    /// The document's top-level map and its name; the validator names the object from then on.
    static func open(_ text: String, kind: String, _ v: inout FieldValidator) throws(ConfigError) -> (top: [String: Any], name: String) {
        let root: Any?
        do {
            root = try Yams.load(yaml: text)
        } catch {
            throw v.fail("", "not YAML: \(error)")
        }
        let top = try v.map(root, "", required: true)!
        _ = try v.string(top["apiVersion"], "apiVersion", required: true, allowed: [FleetSpec.apiVersion])
        _ = try v.string(top["kind"], "kind", required: true, allowed: [kind])
        let metadata = try v.map(top["metadata"], "metadata", required: true)!
        let name = try v.string(metadata["name"], "metadata.name", required: true, minLength: 1, maxLength: 63,
                                pattern: ("DNS label", { KubernetesPatterns.isLabelValue($0) && !$0.contains(".") && !$0.contains("_") }))!
        v.object = "\(kind) \"\(name)\""
        return (top, name)
    }
}
