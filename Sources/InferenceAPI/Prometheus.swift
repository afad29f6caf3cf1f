import NIOCore

/// Prometheus text exposition format 0.0.4: writing (for /metrics) and parsing (for scrapers
/// and tests).
public enum Prometheus {
    /// The `Content-Type` of the text format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// A metric family's type, as written on its `# TYPE` line.
    public enum MetricType: String, Sendable {
        case counter, gauge, histogram, untyped
    }

    /// Formats a value as prometheus_client's `floatToGoString` does: Python's `repr`, except
    /// that positive values with more than six integer digits switch to Go's exponent form
    /// (`3.0`, `0.0421`, `1.7551e+09`, `+Inf`).
    /// A valid label name from any string: each character outside `[a-zA-Z0-9_]` becomes `_`
    /// (as Prometheus's Kubernetes discovery turns `app.kubernetes.io/name` into
    /// `app_kubernetes_io_name`).
    public static func sanitizedLabelName(_ name: String) -> String {
        String(name.unicodeScalars.map { scalar -> Character in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_") ? Character(scalar) : "_"
        })
    }

    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        let text = String(value)  // Swift's shortest round-trip form matches Python's repr
        guard value > 0, let dot = text.firstIndex(of: "."), text.distance(from: text.startIndex, to: dot) > 6 else {
            return text
        }
        let integerDigits = text[..<dot]
        var mantissa = String(integerDigits.prefix(1)) + "." + integerDigits.dropFirst() + text[text.index(after: dot)...]
        while mantissa.hasSuffix("0") || mantissa.hasSuffix(".") { mantissa.removeLast() }
        return mantissa + "e+0" + String(integerDigits.count - 1)
    }

    /// How a client library writes numbers: Python's prometheus_client (vLLM) or Go's
    /// client_golang (GIE's endpoint picker).
    public enum NumberStyle: Sendable {
        case python, go

        public func format(_ value: Double) -> String {
            switch self {
            case .python: Prometheus.format(value)
            case .go: Prometheus.formatGo(value)
            }
        }
    }

    /// Formats a value as client_golang does, with Go's `strconv.FormatFloat(v, 'g', -1, 64)`:
    /// the shortest digits, plain below 1e6 and from 1e-4 up (`1`, `0.005`, `123456`), else in
    /// exponent form (`1e+06`, `1.048576e+06`, `1e-05`).
    public static func formatGo(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        if value == 0 { return value.sign == .minus ? "-0" : "0" }
        // Swift's description holds the shortest round-trip digits, as Go's shortest does.
        let text = String(value.magnitude)
        let parts = text.split(separator: "e")
        let mantissa = parts[0]
        let exponent = parts.count > 1 ? Int(parts[1])! : 0
        var digits = Array(mantissa.filter { $0 != "." })
        var point = (mantissa.firstIndex(of: ".").map { mantissa.distance(from: mantissa.startIndex, to: $0) } ?? mantissa.count) + exponent
        while digits.first == "0" {
            digits.removeFirst()
            point -= 1
        }
        while digits.last == "0" { digits.removeLast() }
        let sign = value < 0 ? "-" : ""
        let decimalExponent = point - 1
        if decimalExponent < -4 || decimalExponent >= 6 {
            let rest = digits.count > 1 ? "." + String(digits.dropFirst()) : ""
            let magnitude = abs(decimalExponent)
            return sign + String(digits[0]) + rest + "e" + (decimalExponent < 0 ? "-" : "+") + (magnitude < 10 ? "0" : "") + String(magnitude)
        }
        if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + String(digits) }
        if point >= digits.count { return sign + String(digits) + String(repeating: "0", count: point - digits.count) }
        return sign + String(digits[..<point]) + "." + String(digits[point...])
    }

    /// A label set as prometheus_client writes it: sorted by name, values escaped, in braces.
    public static func labels(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        let sorted = labels.sorted { $0.0 < $1.0 }
        return "{" + sorted.map { "\($0.0)=\"\(PrometheusWriter.escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
    }
}

/// The pre-rendered lines of one histogram series (name and labels are fixed, so they are
/// rendered once, not on every scrape).
public struct HistogramLines: Sendable {
    let buckets: [String]
    let count: String
    let sum: String

    public init(name: String, labels: [(String, String)], upperBounds: [Double], style: Prometheus.NumberStyle = .python) {
        buckets = (upperBounds.map(style.format) + ["+Inf"]).map {
            name + "_bucket" + Prometheus.labels(labels + [("le", $0)]) + " "
        }
        count = name + "_count" + Prometheus.labels(labels) + " "
        sum = name + "_sum" + Prometheus.labels(labels) + " "
    }
}

/// A cumulative histogram with fixed upper bounds, as prometheus_client keeps one.
public struct PrometheusHistogram: Sendable, Equatable {
    /// Finite upper bounds, ascending; `+Inf` is implicit.
    public let upperBounds: [Double]
    /// Per-bucket (non-cumulative) counts; the last slot is the `+Inf` overflow.
    public private(set) var bucketCounts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(upperBounds: [Double]) {
        self.upperBounds = upperBounds
        self.bucketCounts = Array(repeating: 0, count: upperBounds.count + 1)
    }

    public mutating func observe(_ value: Double) {
        var slot = upperBounds.count
        // Bucket sets are short (≤ 22); a linear scan beats a binary search here.
        for (index, bound) in upperBounds.enumerated() where value <= bound {
            slot = index
            break
        }
        bucketCounts[slot] += 1
        sum += value
        count += 1
    }
}

/// Appends exposition text to a buffer: one `family` call, then its samples.
public struct PrometheusWriter {
    public var buffer: ByteBuffer
    public var style: Prometheus.NumberStyle

    public init(buffer: ByteBuffer = ByteBuffer(), style: Prometheus.NumberStyle = .python) {
        self.buffer = buffer
        self.style = style
    }

    /// Writes the `# HELP` and `# TYPE` lines of a family.
    public mutating func family(_ name: String, help: String, type: Prometheus.MetricType) {
        buffer.writeStaticString("# HELP ")
        buffer.writeString(name)
        buffer.writeStaticString(" ")
        buffer.writeString(Self.escapeHelp(help))
        buffer.writeStaticString("\n# TYPE ")
        buffer.writeString(name)
        buffer.writeStaticString(" ")
        buffer.writeString(type.rawValue)
        buffer.writeStaticString("\n")
    }

    /// Writes one sample line; labels are sorted by name, as prometheus_client writes them.
    public mutating func sample(_ name: String, labels: [(String, String)], value: Double) {
        line(name + Prometheus.labels(labels) + " ", value)
    }

    /// Writes a pre-rendered `name{labels} ` prefix and the value.
    public mutating func line(_ prefix: String, _ value: Double) {
        buffer.writeString(prefix)
        buffer.writeString(style.format(value))
        buffer.writeStaticString("\n")
    }

    /// Writes a histogram's `_bucket`, `_count` and `_sum` lines.
    public mutating func histogram(_ lines: HistogramLines, _ histogram: PrometheusHistogram) {
        var cumulative: UInt64 = 0
        for (index, count) in histogram.bucketCounts.enumerated() {
            cumulative += count
            line(lines.buckets[index], Double(cumulative))
        }
        line(lines.count, Double(histogram.count))
        line(lines.sum, histogram.sum)
    }

    static func escapeLabelValue(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == 0x0A }) else {
            return value
        }
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    static func escapeHelp(_ help: String) -> String {
        // Almost every help text needs no escaping; this runs for every family on every scrape.
        guard help.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == 0x0A }) else { return help }
        var escaped = ""
        for character in help {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

/// One parsed sample line.
public struct PrometheusSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double

    public init(name: String, labels: [String: String], value: Double) {
        self.name = name
        self.labels = labels
        self.value = value
    }
}

/// Why a line of exposition text could not be read.
public struct PrometheusParseError: Error, Sendable, CustomStringConvertible {
    public var line: Int
    public var reason: String
    public var description: String { "line \(line): \(reason)" }
}

extension Prometheus {
    /// Parses exposition text into samples, skipping comments; timestamps are ignored.
    public static func parse(_ text: String) throws(PrometheusParseError) -> [PrometheusSample] {
        var samples: [PrometheusSample] = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.drop(while: { $0 == " " || $0 == "\t" })
            if line.isEmpty || line.first == "#" { continue }
            samples.append(try parseSample(Substring(line), lineNumber: lineNumber))
        }
        return samples
    }

    private static func parseSample(_ line: Substring, lineNumber: Int) throws(PrometheusParseError) -> PrometheusSample {
        let utf8 = Array(line.utf8)
        var index = 0
        func fail(_ reason: String) -> PrometheusParseError { PrometheusParseError(line: lineNumber, reason: reason) }
        while index < utf8.count, utf8[index] != UInt8(ascii: "{"), utf8[index] != UInt8(ascii: " ") { index += 1 }
        let name = String(decoding: utf8[0..<index], as: UTF8.self)
        guard !name.isEmpty else { throw fail("missing metric name") }
        var labels: [String: String] = [:]
        if index < utf8.count, utf8[index] == UInt8(ascii: "{") {
            index += 1
            while true {
                while index < utf8.count, utf8[index] == UInt8(ascii: " ") || utf8[index] == UInt8(ascii: ",") { index += 1 }
                guard index < utf8.count else { throw fail("unterminated label set") }
                if utf8[index] == UInt8(ascii: "}") { index += 1; break }
                let keyStart = index
                while index < utf8.count, utf8[index] != UInt8(ascii: "=") { index += 1 }
                guard index + 1 < utf8.count, utf8[index + 1] == UInt8(ascii: "\"") else { throw fail("expected =\" in label") }
                let key = String(decoding: utf8[keyStart..<index], as: UTF8.self).trimmingSpaces()
                index += 2
                var value: [UInt8] = []
                while true {
                    guard index < utf8.count else { throw fail("unterminated label value") }
                    let byte = utf8[index]
                    index += 1
                    if byte == UInt8(ascii: "\"") { break }
                    if byte == UInt8(ascii: "\\"), index < utf8.count {
                        let escaped = utf8[index]
                        index += 1
                        value.append(escaped == UInt8(ascii: "n") ? 0x0A : escaped)
                    } else {
                        value.append(byte)
                    }
                }
                labels[key] = String(decoding: value, as: UTF8.self)
            }
        }
        let rest = String(decoding: utf8[index...], as: UTF8.self).split(separator: " ")
        guard let valueText = rest.first else { throw fail("missing value") }
        let value: Double
        switch valueText {
        case "+Inf", "Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(valueText) else { throw fail("invalid value \(valueText)") }
            value = parsed
        }
        return PrometheusSample(name: name, labels: labels, value: value)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while view.first == " " { view.removeFirst() }
        while view.last == " " { view.removeLast() }
        return String(view)
    }
}
