import NIOCore

/// What a router reads from a JSON request body (`ScannedBodyStream` reads it as it arrives,
/// building nothing else): the top-level `model`, whether a required member is there, and the
/// first bytes of one member as text.
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
        /// messages); a member repeated in an object is written each time it appears.
        case compactJSON
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
