import NIOCore

/// What a router reads from a JSON request body, found in one pass that builds nothing else:
/// the top-level `model`, whether a required member is there, and the first bytes of one member
/// as text. The whole body is still checked, with `JSONValue.parse`'s errors, so a body one
/// refuses the other refuses too.
public struct ScannedBody: Sendable, Equatable {
    /// The last top-level `model`, when it is a string.
    public var model: String?
    /// The required member is present and not null, `""` or `[]`.
    public var hasRequired = false
    /// The text member's first bytes (at least `limit` of them when it is that long, ending on
    /// a whole character), read as `TextForm` says.
    public var text = ""

    public init(model: String? = nil, hasRequired: Bool = false, text: String = "") {
        self.model = model
        self.hasRequired = hasRequired
        self.text = text
    }

    /// How the text member becomes text.
    public enum TextForm: Sendable {
        /// A string as it reads; the strings of an array joined (other elements left out);
        /// anything else nothing (a completion's prompt).
        case prompt
        /// The value as compact JSON, as `ByteBuffer.writeJSON` writes the parsed value (chat
        /// messages).
        case compactJSON
    }

    /// Scans `body`, which must be a JSON object (nil when its top level is another value).
    /// `textMember`'s text is kept to `limit` bytes (0: not at all).
    public static func scan(
        _ body: ByteBuffer, required: String, textMember: String, form: TextForm, limit: Int
    ) throws(JSONParseError) -> ScannedBody? {
        var result: Result<ScannedBody?, JSONParseError> = .success(nil)
        body.withUnsafeReadableBytes { bytes in
            var parser = JSONParser(bytes: bytes)
            result = Result { () throws(JSONParseError) in
                try parser.scanDocument(required: required, textMember: textMember, form: form, limit: limit)
            }
        }
        return try result.get()
    }
}

/// Bytes kept up to a limit: past it, writes are dropped.
struct LimitedText {
    var bytes: [UInt8] = []
    let limit: Int
    var isFull: Bool { bytes.count >= limit }

    init(limit: Int) {
        self.limit = limit
        if limit > 0 { bytes.reserveCapacity(min(limit, 1 << 16) + 8) }
    }

    mutating func append(_ byte: UInt8) {
        if !isFull { bytes.append(byte) }
    }

    mutating func append(_ run: UnsafeRawBufferPointer) {
        // Three bytes past the limit, so a character cut there can be completed.
        let room = limit + 3 - bytes.count
        if room > 0 { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: run.prefix(room))) }
    }

    mutating func append<S: Sequence<UInt8>>(contentsOf sequence: S) {
        for byte in sequence where bytes.count < limit + 3 { bytes.append(byte) }
    }

    /// The text, ending on a whole character.
    var text: String {
        var end = bytes.count
        if end > limit {
            end = limit
            // Keep a character that begins before the limit whole.
            var start = end
            while start > 0, start > end - 4, bytes[start - 1] & 0xC0 == 0x80 { start -= 1 }
            if start > 0 {
                let lead = bytes[start - 1]
                let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
                end = min(bytes.count, start - 1 + length)
            }
        }
        return String(decoding: bytes[..<end], as: UTF8.self)
    }
}

extension JSONParser {
    mutating func scanDocument(required: String, textMember: String, form: ScannedBody.TextForm, limit: Int) throws(JSONParseError) -> ScannedBody? {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else {
            try skipValue()
            skipWhitespace()
            guard index == bytes.count else { throw fail("Extra data") }
            return nil
        }
        var scanned = ScannedBody()
        try scanObject { (parser: inout JSONParser, key: String) throws(JSONParseError) in
            // As Python's and Go's decoders, a repeated member's last value counts.
            let valueStart = parser.index
            if key == "model" {
                if case .string(let name) = try parser.parseValue() { scanned.model = name } else { scanned.model = nil }
            } else if key == textMember {
                var text = LimitedText(limit: limit)
                switch form {
                case .prompt: try parser.scanPrompt(into: &text)
                case .compactJSON: try parser.writeCompact(into: &text)
                }
                scanned.text = text.text
            } else {
                try parser.skipValue()
            }
            if key == required { scanned.hasRequired = !parser.isEmptyValue(from: valueStart) }
        }
        skipWhitespace()
        guard index == bytes.count else { throw fail("Extra data") }
        return scanned
    }

    /// Whether the value that starts at `start` is null, `""` or an empty array.
    func isEmptyValue(from start: Int) -> Bool {
        switch bytes[start] {
        case UInt8(ascii: "n"): return true
        case UInt8(ascii: "\""): return bytes[start + 1] == UInt8(ascii: "\"")
        case UInt8(ascii: "["):
            var next = start + 1
            while next < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[next]) { next += 1 }
            return next < bytes.count && bytes[next] == UInt8(ascii: "]")
        default: return false
        }
    }

    /// A prompt: a string's characters, or the strings of an array joined.
    mutating func scanPrompt(into text: inout LimitedText) throws(JSONParseError) {
        guard index < bytes.count else { throw fail("Expecting value") }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            try scanString(into: &text, quoted: false)
        case UInt8(ascii: "["):
            try scanArray { (parser: inout JSONParser) throws(JSONParseError) in
                if parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: "\"") {
                    try parser.scanString(into: &text, quoted: false)
                } else {
                    try parser.skipValue()
                }
            }
        default:
            try skipValue()
        }
    }

    /// Skips a value, checking it as `parseValue` does, building nothing.
    mutating func skipValue() throws(JSONParseError) {
        guard index < bytes.count else { throw fail("Expecting value") }
        switch bytes[index] {
        case UInt8(ascii: "{"): try scanObject { (parser: inout JSONParser, _: String) throws(JSONParseError) in try parser.skipValue() }
        case UInt8(ascii: "["): try scanArray { (parser: inout JSONParser) throws(JSONParseError) in try parser.skipValue() }
        case UInt8(ascii: "\""):
            var none = LimitedText(limit: 0)
            try scanString(into: &none, quoted: false)
        default:
            _ = try parseValue()  // a number or a literal: small
        }
    }

    /// Writes a value as `ByteBuffer.writeJSON` would write the parsed value (a repeated member
    /// is written each time it appears, where the parsed object keeps the first place).
    mutating func writeCompact(into text: inout LimitedText) throws(JSONParseError) {
        guard index < bytes.count else { throw fail("Expecting value") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            text.append(UInt8(ascii: "{"))
            var first = true
            try scanObject { (parser: inout JSONParser, key: String) throws(JSONParseError) in
                if !first { text.append(UInt8(ascii: ",")) }
                first = false
                var quoted = ByteBuffer()
                quoted.writeJSONString(key)
                text.append(contentsOf: quoted.readableBytesView)
                text.append(UInt8(ascii: ":"))
                try parser.writeCompact(into: &text)
            }
            text.append(UInt8(ascii: "}"))
        case UInt8(ascii: "["):
            text.append(UInt8(ascii: "["))
            var first = true
            try scanArray { (parser: inout JSONParser) throws(JSONParseError) in
                if !first { text.append(UInt8(ascii: ",")) }
                first = false
                try parser.writeCompact(into: &text)
            }
            text.append(UInt8(ascii: "]"))
        case UInt8(ascii: "\""):
            try scanString(into: &text, quoted: true)
        default:
            var written = ByteBuffer()
            written.writeJSON(try parseValue())
            text.append(contentsOf: written.readableBytesView)
        }
    }

    /// A string, checked as `parseString` checks it, its characters appended to `text` (quoted
    /// and escaped as `writeJSONString` writes them when `quoted`) until it is full.
    mutating func scanString(into text: inout LimitedText, quoted: Bool) throws(JSONParseError) {
        let quote = index
        index += 1
        if quoted { text.append(UInt8(ascii: "\"")) }
        while true {
            let run = index
            index = plainRunEnd(from: index)
            if index > run, !text.isFull { text.append(UnsafeRawBufferPointer(rebasing: bytes[run..<index])) }
            guard index < bytes.count else { throw fail("Unterminated string starting at", at: quote) }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                if quoted { text.append(UInt8(ascii: "\"")) }
                return
            case UInt8(ascii: "\\"):
                // Past the text's limit a one-letter escape is only stepped over.
                if text.isFull, index + 1 < bytes.count, Self.isOneLetterEscape(bytes[index + 1]) {
                    index += 2
                    continue
                }
                let scalar = try readEscape(quote: quote)
                guard !text.isFull else { continue }
                if quoted {
                    // Re-escaped as writeJSONString escapes (quotes, backslashes, controls).
                    var written = ByteBuffer()
                    written.writeJSONString(utf8: scalar.utf8)
                    text.append(contentsOf: written.readableBytesView.dropFirst().dropLast())
                } else {
                    text.append(contentsOf: scalar.utf8)
                }
            default:
                throw fail("Invalid control character at")
            }
        }
    }

    /// `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`: the escapes `readEscape` takes without `\u`.
    @inline(__always)
    static func isOneLetterEscape(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
             UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"): return true
        default: return false
        }
    }
}
