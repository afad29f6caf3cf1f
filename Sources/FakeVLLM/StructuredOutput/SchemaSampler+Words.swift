import Foundation
import InferenceAPI

// MARK: - Words and formats

extension SchemaSampler {
    static let words = [
        "amber", "apple", "breeze", "bridge", "candle", "canyon", "cedar", "cloud", "copper", "coral", "delta", "ember",
        "fable", "falcon", "forest", "garden", "glacier", "granite", "harbor", "hollow", "island", "ivory", "jasmine",
        "juniper", "kettle", "lantern", "lemon", "light", "maple", "marble", "meadow", "mirror", "nectar", "ocean",
        "orchid", "pepper", "pillow", "quartz", "raven", "river", "saddle", "silver", "stone", "summer", "thunder",
        "timber", "velvet", "violet", "willow", "winter",
    ]
    static let plausibleKeys = ["answer", "result", "summary", "explanation", "status"]
    /// Formats drawn and checked; others are annotations (as JSON Schema 2020-12 has them) and
    /// get plain words.
    static let knownFormats: Set<String> = ["date", "date-time", "time", "email", "uuid", "uri", "ipv4", "ipv6", "hostname"]

    static func word(_ generator: inout SplitMix64) -> String { words[Int.random(in: 0..<words.count, using: &generator)] }

    /// One to three words, lengthened or cut to fit the bounds (at most `maxMinLength` long,
    /// since init refuses larger minimums).
    static func phrase(minLength: Int = 0, maxLength: Int = Int.max, using generator: inout SplitMix64) -> String {
        var text = "", length = 0, count = 0
        let target = Int.random(in: 1...3, using: &generator)
        while count < target || length < minLength {
            let next = word(&generator)
            if count > 0 { text += " " }
            text += next
            length += next.count + (count > 0 ? 1 : 0)
            count += 1
        }
        guard length > maxLength else { return text }
        var cut = String(String.UnicodeScalarView(text.unicodeScalars.prefix(maxLength)))
        if cut.hasSuffix(" "), maxLength - 1 >= minLength { cut.removeLast() }
        return cut
    }

    static func digits(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    static func formatted(_ format: String, using g: inout SplitMix64) -> String? {
        func number(_ range: ClosedRange<Int>, _ width: Int, _ g: inout SplitMix64) -> String { digits(Int.random(in: range, using: &g), width) }
        func date(_ g: inout SplitMix64) -> String { "\(number(2000...2030, 4, &g))-\(number(1...12, 2, &g))-\(number(1...28, 2, &g))" }
        func time(_ g: inout SplitMix64) -> String { "\(number(0...23, 2, &g)):\(number(0...59, 2, &g)):\(number(0...59, 2, &g))Z" }
        switch format {
        case "date": return date(&g)
        case "time": return time(&g)
        case "date-time": return date(&g) + "T" + time(&g)
        case "email": return "\(word(&g)).\(word(&g))@example.com"
        case "uri": return "https://example.com/\(word(&g))"
        case "hostname": return "\(word(&g)).example.com"
        case "ipv4": return (0..<4).map { _ in String(Int.random(in: 0...255, using: &g)) }.joined(separator: ".")
        case "ipv6": return (0..<8).map { _ in String(UInt16.random(in: 0...UInt16.max, using: &g), radix: 16) }.joined(separator: ":")
        case "uuid":
            // Version 4: the version nibble is 4 and the variant bits are 10.
            let high = (g.next() & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000, low = (g.next() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
            let hex = digits16(high) + digits16(low)
            let parts = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { range in
                String(hex.dropFirst(range.lowerBound).prefix(range.count))
            }
            return parts.joined(separator: "-")
        default: return nil
        }
    }

    static func digits16(_ value: UInt64) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }

    /// Whether `text` is a valid instance of a known format (RFC 3339 dates and times, a
    /// plain-address email, RFC 4122 UUID, absolute URI, dotted-quad IPv4, IPv6, hostname).
    static func conforms(_ text: String, to format: String) -> Bool {
        let s = Array(text.unicodeScalars)
        func value(_ range: Range<Int>, in s: [Unicode.Scalar]) -> Int? {
            guard range.upperBound <= s.count, !range.isEmpty, s[range].allSatisfy({ ("0"..."9").contains($0) }) else { return nil }
            return Int(String(String.UnicodeScalarView(s[range])))
        }
        func isDate(_ s: [Unicode.Scalar]) -> Bool {
            guard s.count == 10, s[4] == "-", s[7] == "-", let year = value(0..<4, in: s), let month = value(5..<7, in: s),
                  let day = value(8..<10, in: s), (1...12).contains(month) else { return false }
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
            let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
            return (1...days).contains(day)
        }
        func isTime(_ s: [Unicode.Scalar]) -> Bool {
            guard s.count >= 9, s[2] == ":", s[5] == ":", let hour = value(0..<2, in: s), let minute = value(3..<5, in: s),
                  let second = value(6..<8, in: s), hour <= 23, minute <= 59, second <= 60 else { return false }
            var rest = s[8...]
            if rest.first == "." {
                let fraction = rest.dropFirst().prefix { ("0"..."9").contains($0) }
                guard !fraction.isEmpty else { return false }
                rest = rest.dropFirst(1 + fraction.count)
            }
            if rest.count == 1 { return rest.first == "Z" || rest.first == "z" }
            let offset = Array(rest)
            guard offset.count == 6, offset[0] == "+" || offset[0] == "-", offset[3] == ":",
                  let hours = value(1..<3, in: offset), let minutes = value(4..<6, in: offset) else { return false }
            return hours <= 23 && minutes <= 59
        }
        let hex = { (scalar: Unicode.Scalar) in scalar.properties.isASCIIHexDigit }
        let visible = s.allSatisfy { $0.value > 0x20 && $0.value != 0x7F }
        switch format {
        case "date": return isDate(s)
        case "time": return isTime(s)
        case "date-time":
            guard s.count > 11, s[10] == "T" || s[10] == "t" else { return false }
            return isDate(Array(s[..<10])) && isTime(Array(s[11...]))
        case "email":
            let parts = text.split(separator: "@", omittingEmptySubsequences: false)
            return visible && parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".")
                && !parts[1].hasPrefix(".") && !parts[1].hasSuffix(".")
        case "uuid":
            return s.count == 36 && s.indices.allSatisfy { [8, 13, 18, 23].contains($0) ? s[$0] == "-" : hex(s[$0]) }
        case "uri":
            guard visible, let colon = s.firstIndex(of: ":"), colon > 0, colon < s.count - 1, s[0].properties.isAlphabetic, s[0].isASCII
            else { return false }
            return s[..<colon].allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "+-.".unicodeScalars.contains($0)) }
        case "ipv4":
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            return parts.count == 4 && parts.allSatisfy { part in
                guard let number = Int(part), part.count <= 3, part.allSatisfy(\.isASCII), part.first != "+", part.first != "-" else { return false }
                return number <= 255 && (part.count == 1 || part.first != "0")
            }
        case "ipv6":
            let halves = text.components(separatedBy: "::")
            guard halves.count <= 2 else { return false }
            let groups = halves.map { $0.isEmpty ? [] : $0.split(separator: ":", omittingEmptySubsequences: false) }
            let total = groups.reduce(0) { $0 + $1.count }
            let wellFormed = groups.allSatisfy { $0.allSatisfy { (1...4).contains($0.count) && $0.unicodeScalars.allSatisfy(hex) } }
            return wellFormed && (halves.count == 2 ? total <= 7 : total == 8)
        case "hostname":
            let labels = text.split(separator: ".", omittingEmptySubsequences: false)
            return s.count <= 253 && labels.allSatisfy { label in
                (1...63).contains(label.count) && label.first != "-" && label.last != "-"
                    && label.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") }
            }
        default: return true
        }
    }
}
