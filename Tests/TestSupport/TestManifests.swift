/// Manifest documents the gateway tests of several targets add to their pools.
public enum TestManifests {
    /// An InferenceModelRewrite sending every request for `name` to `target`, appended to a pool
    /// named `pool` as a further document.
    public static func alias(_ name: String, to target: String) -> String {
        """

        ---
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferenceModelRewrite
        metadata: {name: alias}
        spec:
          poolRef: {name: pool}
          rules:
          - matches: [{model: {value: \(name)}}]
            targets: [{modelRewrite: \(target), weight: 1}]
        """
    }
}
