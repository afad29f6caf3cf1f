import NIOCore

/// Byte-level edits of a JSON object that keep every other byte as the client sent it (numbers,
/// spacing, key order), where decoding and re-encoding would not.
public enum JSONSplice {
    /// The body with the top-level member `key` set to the string `value`; nil when the body is
    /// not an object with that member. As Python's and Go's decoders, the last duplicate counts.
    /// `body` must already be known to be valid JSON.
    public static func replacingTopLevelString(_ key: String, with value: String, in body: ByteBuffer) -> ByteBuffer? {
        guard let range = body.withUnsafeReadableBytes({ topLevelValueRange(key, in: $0) }) else { return nil }
        var out = ByteBuffer()
        out.reserveCapacity(body.readableBytes + value.utf8.count + 8)
        out.writeBytes(body.readableBytesView[body.readerIndex..<(body.readerIndex + range.lowerBound)])
        out.writeJSONString(value)
        out.writeBytes(body.readableBytesView[(body.readerIndex + range.upperBound)...])
        return out
    }

    /// Offsets of the value of the top-level member `key`.
    static func topLevelValueRange(_ key: String, in bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        var index = 0
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        func skipWhitespace() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0A || bytes[index] == 0x0D { index += 1 }
        }
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        var found: Range<Int>?
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return found }
            let keyStart = index
            index = endOfString(bytes, from: index)
            let matches = keyMatches(key, UnsafeRawBufferPointer(rebasing: bytes[keyStart..<index]))
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return found }
            index += 1
            skipWhitespace()
            let valueStart = index
            index = endOfValue(bytes, from: index)
            if matches { found = valueStart..<index }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ",") else { return found }
            index += 1
        }
    }

    /// Whether a quoted key (quotes included) decodes to `key`.
    private static func keyMatches(_ key: String, _ quoted: UnsafeRawBufferPointer) -> Bool {
        let raw = quoted.dropFirst().dropLast()
        if !raw.contains(UInt8(ascii: "\\")) { return raw.elementsEqual(key.utf8) }
        // The body is known to be valid JSON, so the key decodes; were it not, it simply does not match.
        guard case .string(let decoded)? = try? JSONValue.parse(ByteBuffer(bytes: quoted)) else { return false }
        return decoded == key
    }

    /// The offset just past the string starting at `start` (its opening quote).
    private static func endOfString(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start + 1
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\\"): index += 2
            case UInt8(ascii: "\""): return index + 1
            default: index += 1
            }
        }
        return bytes.count
    }

    /// The offset just past the value starting at `start`.
    private static func endOfValue(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        guard start < bytes.count else { return start }
        switch bytes[start] {
        case UInt8(ascii: "\""):
            return endOfString(bytes, from: start)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var index = start
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""): index = endOfString(bytes, from: index); continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return index + 1 }
                default: break
                }
                index += 1
            }
            return index
        default:
            var index = start
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D: return index
                default: index += 1
                }
            }
            return index
        }
    }
}
