/// A duration as Go's `time.ParseDuration` writes one with a single unit (`200ms`, `1s`, `1.5m`),
/// as GIE's configuration and flags take them.
public enum GoDuration {
    /// Seconds, or nil when the text is not a number followed by a unit.
    public static func seconds(_ text: String) -> Double? {
        let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            if let number = Double(text.dropLast(suffix.count)) { return number * scale }
        }
        return nil
    }
}
