import NIOCore

/// Writes JSON straight into a `ByteBuffer`. Responses and stream chunks are written on the hot
/// path, where Foundation's encoder costs tens of times more than appending bytes.
extension ByteBuffer {
    /// Appends `text` as a quoted, escaped JSON string.
    public mutating func writeJSONString(_ text: some StringProtocol) {
        writeJSONString(utf8: text.utf8)
    }

    /// Appends UTF-8 bytes as a quoted, escaped JSON string, with no `String` in between.
    public mutating func writeJSONString<Bytes: Collection<UInt8>>(utf8 bytes: Bytes) {
        writeInteger(UInt8(ascii: "\""))
        var pendingStart = bytes.startIndex
        var position = bytes.startIndex
        while position != bytes.endIndex {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
                writeBytes(bytes[pendingStart..<position])
                writeEscaped(byte)
                pendingStart = bytes.index(after: position)
            }
            position = bytes.index(after: position)
        }
        writeBytes(bytes[pendingStart..<position])
        writeInteger(UInt8(ascii: "\""))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    private mutating func writeEscaped(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): writeStaticString("\\\"")
        case UInt8(ascii: "\\"): writeStaticString("\\\\")
        case 0x0A: writeStaticString("\\n")
        case 0x0D: writeStaticString("\\r")
        case 0x09: writeStaticString("\\t")
        case 0x08: writeStaticString("\\b")
        case 0x0C: writeStaticString("\\f")
        default:
            writeStaticString("\\u00")
            writeInteger(Self.hexDigits[Int(byte >> 4)])
            writeInteger(Self.hexDigits[Int(byte & 0xF)])
        }
    }

    /// Appends an optional string, or `null`.
    public mutating func writeJSONString(orNull text: String?) {
        if let text { writeJSONString(text) } else { writeStaticString("null") }
    }

    /// Appends a decimal integer.
    public mutating func writeJSONInteger(_ value: some BinaryInteger) {
        writeString(String(value))
    }

    /// Appends a number as JSON; non-finite values become `null`, as JSON has no spelling for them.
    public mutating func writeJSONDouble(_ value: Double) {
        if value.isFinite { writeString(String(value)) } else { writeStaticString("null") }
    }

    /// Appends any parsed JSON value (used to echo input back, e.g. in error messages); `spaced`
    /// writes Python's `json.dumps` separators (`", "`, `": "`), as language models write JSON.
    public mutating func writeJSON(_ value: JSONValue, spaced: Bool = false) {
        switch value {
        case .null: writeStaticString("null")
        case .bool(let flag): writeStaticString(flag ? "true" : "false")
        case .integer(let number): writeJSONInteger(number)
        case .double(let number): writeJSONDouble(number)
        case .string(let text): writeJSONString(text)
        case .array(let elements):
            writeInteger(UInt8(ascii: "["))
            for (offset, element) in elements.enumerated() {
                if offset > 0 { spaced ? writeStaticString(", ") : writeStaticString(",") }
                writeJSON(element, spaced: spaced)
            }
            writeInteger(UInt8(ascii: "]"))
        case .object(let fields):
            writeInteger(UInt8(ascii: "{"))
            for (offset, member) in fields.enumerated() {
                if offset > 0 { spaced ? writeStaticString(", ") : writeStaticString(",") }
                writeJSONString(member.key)
                spaced ? writeStaticString(": ") : writeStaticString(":")
                writeJSON(member.value, spaced: spaced)
            }
            writeInteger(UInt8(ascii: "}"))
        }
    }
}

extension JSONValue {
    /// The value as JSON text (see `ByteBuffer.writeJSON(_:spaced:)`).
    public func jsonText(spaced: Bool = false) -> String {
        var buffer = ByteBuffer()
        buffer.writeJSON(self, spaced: spaced)
        return String(buffer: buffer)
    }
}
