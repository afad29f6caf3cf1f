import NIOCore

/// Splits a server-sent event stream into its `data:` payloads, whatever the chunking.
struct ServerSentEvents {
    private var pending: ByteBuffer?

    /// Only the unread tail (a partial event) is kept: appending to everything read so far
    /// would copy the whole stream once per chunk (events are slices of the same storage).
    mutating func append(_ chunk: inout ByteBuffer) {
        guard var buffer = pending else {
            pending = chunk
            return
        }
        pending = nil
        buffer.discardReadBytes()
        buffer.writeBuffer(&chunk)
        pending = buffer
    }

    /// The next complete event's data (without `data: ` and the blank line), if one has arrived.
    mutating func next() -> ByteBuffer? {
        while var buffer = pending, buffer.readableBytes > 0 {
            let view = buffer.readableBytesView
            guard let end = Self.firstBlankLine(in: view) else { return nil }
            let length = end - view.startIndex
            var event = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 2)
            pending = buffer.readableBytes > 0 ? buffer : nil
            if event.readableBytesView.starts(with: "data: ".utf8) {
                event.moveReaderIndex(forwardBy: 6)
                return event
            }
            // A comment or another field: not a payload.
        }
        return nil
    }

    private static func firstBlankLine(in bytes: ByteBufferView) -> Int? {
        var index = bytes.startIndex
        while let newline = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) {
            let after = bytes.index(after: newline)
            if after < bytes.endIndex, bytes[after] == UInt8(ascii: "\n") { return newline }
            index = after
            if index >= bytes.endIndex { return nil }
        }
        return nil
    }

    /// A JSON member named `key` in an event: `"key"` not inside a string (where its quotes
    /// would be escaped).
    static func containsKey(_ key: String, in bytes: ByteBufferView) -> Bool {
        let needle = Array("\"\(key)\"".utf8)
        var index = bytes.startIndex
        while let found = bytes[index...].firstRange(of: needle) {
            if found.lowerBound == bytes.startIndex || bytes[bytes.index(before: found.lowerBound)] != UInt8(ascii: "\\") { return true }
            index = found.upperBound
        }
        return false
    }

    static func contains(_ text: String, in bytes: ByteBufferView) -> Bool {
        bytes.firstRange(of: Array(text.utf8)) != nil
    }
}
