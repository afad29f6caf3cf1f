import NIOCore

/// Reads a JSON request body as it arrives, for what a router needs (`ScannedBody`): fed each
/// piece as it comes, it keeps only its place in the JSON (the open containers, the string,
/// escape or token it is in) and what it reads, so a body is read once, while it arrives, and
/// no tree is built. It accepts exactly what `JSONValue.parse` accepts (its tests hold it to
/// that, with bodies cut anywhere), but only says that a malformed body is malformed: the
/// parser, over the whole body, says why, and is needed only then.
public struct ScannedBodyStream {
    /// What a body turned out to be.
    public enum Outcome: Equatable, Sendable {
        case scanned(ScannedBody)
        /// Valid JSON whose top level is not an object.
        case notAnObject
        case malformed
    }

    private let required: [UInt8]
    private let textMember: [UInt8]
    private let form: ScannedBody.TextForm
    private let limit: Int
    private var result = ScannedBody()

    /// Where the reader is between values.
    private enum Expect {
        case byteOrderMark(matched: Int), document, value, valueOrClose, keyOrClose, key, colon, commaOrClose, end
    }
    private enum Mode { case structure, string, token }
    private var expect = Expect.byteOrderMark(matched: 0)
    private var mode = Mode.structure
    private var failed = false
    /// The open containers, innermost last: true for an object.
    private var objects: [Bool] = []
    private var isObjectDocument = false

    // The member of the top-level object being read.
    private var key: [UInt8] = []
    private var member = Member()
    private struct Member {
        var isModel = false, isText = false, isRequired = false
        /// The required member's value is null, "" or [].
        var isEmpty = false
    }
    private var model: [UInt8] = []
    private var text = LimitedText(limit: 0)
    /// The text member's value is being written as compact JSON (chat messages).
    private var compacting = false
    /// The text member's value is an array of prompt strings.
    private var promptArray = false

    // The string being read.
    private enum Sink { case none, key, model, text, quotedText }
    private var sink = Sink.none
    private var stringIsEmpty = true
    private enum Escape { case none, backslash, hex(digits: Int, value: UInt32) }
    private var escape = Escape.none
    private var pendingHigh: UInt32?

    // The number or literal being read (kept whole: the parser reads it as one value).
    private var token: [UInt8] = []
    private static let modelKey = Array("model".utf8)
    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    public init(required: String, textMember: String, form: ScannedBody.TextForm, limit: Int) {
        self.required = Array(required.utf8)
        self.textMember = Array(textMember.utf8)
        self.form = form
        self.limit = limit
    }

    public mutating func feed(_ piece: ByteBuffer) {
        piece.withUnsafeReadableBytes { feed($0) }
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        while index < bytes.count, !failed {
            switch mode {
            case .structure: index = structure(bytes, from: index)
            case .string: index = string(bytes, from: index)
            case .token: index = tokenBytes(bytes, from: index)
            }
        }
    }

    /// The body has ended.
    public mutating func finish() -> Outcome {
        if mode == .token, !failed { endToken() }
        guard !failed, mode == .structure, case .end = expect else { return .malformed }
        return isObjectDocument ? .scanned(result) : .notAnObject
    }

    // MARK: Between values

    private mutating func structure(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < bytes.count, mode == .structure, !failed {
            let byte = bytes[index]
            if case .byteOrderMark(let matched) = expect {
                // As the parser: EF BB BF at the start is skipped; a start of it and then
                // something else cannot be JSON.
                if matched == 0, byte != 0xEF {
                    expect = .document
                    continue
                }
                guard byte == Self.byteOrderMark[matched] else { return fail() }
                expect = matched == 2 ? .document : .byteOrderMark(matched: matched + 1)
                index += 1
                continue
            }
            index += 1
            if byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { continue }
            switch expect {
            case .byteOrderMark: break
            case .document, .value: startValue(byte)
            case .valueOrClose:
                if byte == UInt8(ascii: "]") {
                    close(array: true)
                } else {
                    // An array directly in the top-level object is that member's value: not empty.
                    if objects.count == 2, isObjectDocument { member.isEmpty = false }
                    startValue(byte)
                }
            case .keyOrClose:
                if byte == UInt8(ascii: "}") { close(array: false) } else { startKey(byte) }
            case .key: startKey(byte)
            case .colon:
                guard byte == UInt8(ascii: ":") else { return fail() }
                if compacting { text.append(byte) }
                expect = .value
            case .commaOrClose:
                if byte == UInt8(ascii: ",") {
                    if compacting { text.append(byte) }
                    expect = objects.last! ? .key : .value
                } else if byte == (objects.last! ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    close(array: !objects.last!)
                } else {
                    return fail()
                }
            case .end: return fail()
            }
        }
        return index
    }

    private mutating func fail() -> Int {
        failed = true
        return Int.max
    }

    /// A value begins with `byte` (already consumed).
    private mutating func startValue(_ byte: UInt8) {
        let isMember = objects.count == 1 && isObjectDocument
        if isMember { beginMember(byte) }
        switch byte {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            // The parser's depth limit: a body nested deeper is refused.
            guard objects.count < JSONParser.maxDepth else { _ = fail(); return }
            if objects.isEmpty, byte == UInt8(ascii: "{") { isObjectDocument = true }
            if compacting { text.append(byte) }
            if isMember, member.isText, form == .prompt, byte == UInt8(ascii: "[") { promptArray = true }
            objects.append(byte == UInt8(ascii: "{"))
            expect = byte == UInt8(ascii: "{") ? .keyOrClose : .valueOrClose
        case UInt8(ascii: "\""):
            if isMember, member.isModel {
                sink = .model
                model.removeAll(keepingCapacity: true)
            } else if compacting {
                sink = .quotedText
                text.append(byte)
            } else if isMember && member.isText || promptArray && objects.count == 2 {
                sink = .text  // the prompt, or one of the prompt array's strings
            } else {
                sink = .none
            }
            beginString()
        default:
            guard Self.isTokenByte(byte) else { _ = fail(); return }
            token.removeAll(keepingCapacity: true)
            token.append(byte)
            mode = .token
        }
    }

    /// A member of the top-level object starts its value with `byte`.
    private mutating func beginMember(_ byte: UInt8) {
        member = Member(isModel: key == Self.modelKey, isText: key == textMember, isRequired: key == required)
        if member.isModel { member.isText = false }
        member.isEmpty = byte == UInt8(ascii: "n") || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "[")
        if member.isText {
            text = LimitedText(limit: limit)
            compacting = form == .compactJSON
        }
    }

    /// The value that just ended was a member's of the top-level object.
    private mutating func endMember(wasString: Bool) {
        if member.isModel, !wasString { result.model = nil }
        if member.isText {
            result.text = text.text
            compacting = false
            promptArray = false
        }
        if member.isRequired { result.hasRequired = !member.isEmpty }
    }

    private mutating func close(array: Bool) {
        if compacting { text.append(array ? UInt8(ascii: "]") : UInt8(ascii: "}")) }
        objects.removeLast()
        valueEnded(wasString: false)
    }

    /// Any value ended: what may come next.
    private mutating func valueEnded(wasString: Bool) {
        if objects.count == 1, isObjectDocument { endMember(wasString: wasString) }
        expect = objects.isEmpty ? .end : .commaOrClose
    }

    /// A key begins with `byte` (already consumed): a quote, or the body is malformed.
    private mutating func startKey(_ byte: UInt8) {
        guard byte == UInt8(ascii: "\"") else { _ = fail(); return }
        if compacting {
            sink = .quotedText
            text.append(byte)
        } else if objects.count == 1, isObjectDocument {
            sink = .key
            key.removeAll(keepingCapacity: true)
        } else {
            sink = .none
        }
        expect = .colon
        beginString()
    }

    // MARK: Strings

    private mutating func beginString() {
        mode = .string
        stringIsEmpty = true
        escape = .none
        pendingHigh = nil
    }

    private mutating func string(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        let runs = JSONParser(bytes: bytes)
        while index < bytes.count {
            if case .none = escape, pendingHigh == nil, !isKeeping {
                // Nothing is kept (the text is full, or no one reads this string): the string's
                // end is looked for and its one-letter escapes stepped over in one tight loop.
                // What stops it (the quote, a control character, a \u escape, an escape cut by
                // the piece's end) is read below.
                let from = index
                while true {
                    index = runs.plainRunEnd(from: index)
                    guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), Self.isOneLetterEscape(bytes[index + 1]) else { break }
                    index += 2
                }
                if index > from { stringIsEmpty = false }
                guard index < bytes.count else { return index }
            }
            switch escape {
            case .none:
                let run = index
                index = runs.plainRunEnd(from: index)
                if index > run {
                    stringIsEmpty = false
                    flushHigh()
                    keep(UnsafeRawBufferPointer(rebasing: bytes[run..<index]))
                }
                guard index < bytes.count else { return index }
                let byte = bytes[index]
                index += 1
                if byte == UInt8(ascii: "\"") {
                    endString()
                    return index
                }
                guard byte == UInt8(ascii: "\\") else { return fail() }
                stringIsEmpty = false
                escape = .backslash
            case .backslash:
                let byte = bytes[index]
                index += 1
                switch byte {
                case UInt8(ascii: "u"): escape = .hex(digits: 0, value: 0)
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): escaped(UInt32(byte), unicode: false)
                case UInt8(ascii: "b"): escaped(0x08, unicode: false)
                case UInt8(ascii: "f"): escaped(0x0C, unicode: false)
                case UInt8(ascii: "n"): escaped(0x0A, unicode: false)
                case UInt8(ascii: "r"): escaped(0x0D, unicode: false)
                case UInt8(ascii: "t"): escaped(0x09, unicode: false)
                default: return fail()
                }
            case .hex(let digits, let value):
                let byte = bytes[index]
                index += 1
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: return fail()
                }
                if digits == 3 { escaped(value << 4 | digit, unicode: true) } else { escape = .hex(digits: digits + 1, value: value << 4 | digit) }
            }
        }
        return index
    }

    /// `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`: the escapes `readEscape` takes without `\u`.
    @inline(__always)
    private static func isOneLetterEscape(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
             UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"): return true
        default: return false
        }
    }

    /// An escape was read: the parser's pairing of surrogates, a lone one read as U+FFFD.
    private mutating func escaped(_ code: UInt32, unicode: Bool) {
        escape = .none
        if let high = pendingHigh {
            pendingHigh = nil
            if unicode, (0xDC00..<0xE000).contains(code) {
                keep(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00))!)
                return
            }
            keep("\u{FFFD}")
        }
        if unicode, (0xD800..<0xDC00).contains(code) {
            pendingHigh = code
            return
        }
        keep(Unicode.Scalar(code) ?? "\u{FFFD}")
    }

    private mutating func flushHigh() {
        if pendingHigh != nil {
            pendingHigh = nil
            keep("\u{FFFD}")
        }
    }

    /// Whether the string's characters are still kept.
    private var isKeeping: Bool {
        switch sink {
        case .none: false
        case .key, .model: true
        // Up to 3 bytes past the limit: the rest of a character the limit cuts.
        case .text, .quotedText: text.bytes.count < text.limit + 3
        }
    }

    private mutating func keep(_ run: UnsafeRawBufferPointer) {
        switch sink {
        case .none: break
        case .key: if key.count <= 64 { key.append(contentsOf: run.prefix(65 - key.count)) }
        case .model: model.append(contentsOf: run)
        // Not only while the text is short of its limit: a character the limit cuts may be cut
        // by a piece's end too, and its rest must follow (`append` stops 3 bytes past the limit).
        case .text, .quotedText: text.append(run)
        }
    }

    private mutating func keep(_ scalar: Unicode.Scalar) {
        switch sink {
        case .none: break
        case .key: if key.count <= 64 { key.append(contentsOf: scalar.utf8) }
        case .model: model.append(contentsOf: scalar.utf8)
        case .text: if !text.isFull { text.append(contentsOf: scalar.utf8) }
        case .quotedText:
            guard !text.isFull else { return }
            // Re-escaped as writeJSONString escapes (quotes, backslashes, controls).
            var written = ByteBuffer()
            written.writeJSONString(utf8: scalar.utf8)
            text.append(contentsOf: written.readableBytesView.dropFirst().dropLast())
        }
    }

    private mutating func endString() {
        flushHigh()
        mode = .structure
        switch sink {
        case .key:
            return  // a key: its colon comes next
        case .model:
            result.model = String(decoding: model, as: UTF8.self)
        case .quotedText:
            text.append(UInt8(ascii: "\""))
        case .none, .text:
            break
        }
        if case .colon = expect { return }  // a key inside the compacted value, or a skipped one
        if member.isRequired, objects.count == 1, isObjectDocument, !stringIsEmpty { member.isEmpty = false }
        valueEnded(wasString: true)
    }

    // MARK: Numbers and literals

    /// Bytes a number or a literal is made of; whatever else ends it.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }

    private mutating func tokenBytes(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            guard Self.isTokenByte(byte) else {
                endToken()
                return index  // the byte after the token is structure's to read
            }
            token.append(byte)
            index += 1
        }
        return index
    }

    /// A number or literal ended: valid when the parser reads it whole as one value.
    private mutating func endToken() {
        mode = .structure
        var value: JSONValue?
        token.withUnsafeBytes { bytes in
            var parser = JSONParser(bytes: bytes)
            value = try? parser.parseValue()
            if parser.index != bytes.count { value = nil }
        }
        guard let value else { _ = fail(); return }
        if compacting {
            var written = ByteBuffer()
            written.writeJSON(value)
            text.append(contentsOf: written.readableBytesView)
        }
        valueEnded(wasString: false)
    }
}
