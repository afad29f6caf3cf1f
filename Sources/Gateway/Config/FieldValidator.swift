import Foundation

/// Why a manifest was refused, worded as the Kubernetes API server words a CRD validation
/// failure (`spec.targetPorts[0].number: Invalid value: 70000: … should be less than or equal
/// to 65535`), with the file and document it came from.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based position of the YAML document in the file.
    public var document: Int
    /// `InferencePool "vllm"`, or empty before the kind is known.
    public var object: String
    /// The field path, as `spec.targetPorts[0].number`.
    public var field: String
    public var reason: String

    public init(file: String, document: Int, object: String, field: String, reason: String) {
        self.file = file
        self.document = document
        self.object = object
        self.field = field
        self.reason = reason
    }

    public var description: String {
        let location = "\(file): document \(document)"
        let subject = object.isEmpty ? "" : "The \(object) is invalid: "
        return "\(location): \(subject)\(field.isEmpty ? "" : field + ": ")\(reason)"
    }
}

/// Reads a decoded YAML tree (Yams' `Any` values) field by field, checking the OpenAPI rules
/// the CRDs declare. Every check names the field path, so the error says exactly what is wrong.
/// The fleet manager reads its fleet files with it too.
public struct FieldValidator {
    public let file: String
    public let document: Int
    public var object = ""

    public init(file: String, document: Int, object: String = "") {
        self.file = file
        self.document = document
        self.object = object
    }

    /// A failure at `path`.
    public func fail(_ path: String, _ reason: String) -> ConfigError {
        ConfigError(file: file, document: document, object: object, field: path, reason: reason)
    }

    public func map(_ value: Any?, _ path: String, required: Bool = false) throws(ConfigError) -> [String: Any]? {
        guard let value = present(value) else {
            if required { throw fail(path, "Required value") }
            return nil
        }
        guard let map = value as? [String: Any] else {
            throw fail(path, "Invalid value: \(Self.describe(value)): \(path) in body must be of type object")
        }
        return map
    }

    public func list(_ value: Any?, _ path: String, required: Bool = false, minItems: Int = 0, maxItems: Int = .max) throws(ConfigError) -> [Any]? {
        guard let value = present(value) else {
            if required { throw fail(path, "Required value") }
            return nil
        }
        guard let items = value as? [Any] else {
            throw fail(path, "Invalid value: \(Self.describe(value)): \(path) in body must be of type array")
        }
        if items.count < minItems {
            throw fail(path, "Invalid value: \(items.count): \(path) in body should have at least \(minItems) items")
        }
        if items.count > maxItems {
            throw fail(path, "Too many: \(items.count): must have at most \(maxItems) items")
        }
        return items
    }

    public func string(
        _ value: Any?, _ path: String, required: Bool = false, minLength: Int = 0, maxLength: Int = .max,
        allowed: [String]? = nil, pattern: (String, (String) -> Bool)? = nil
    ) throws(ConfigError) -> String? {
        guard let value = present(value) else {
            if required { throw fail(path, "Required value") }
            return nil
        }
        guard let text = value as? String else {
            throw fail(path, "Invalid value: \(Self.describe(value)): \(path) in body must be of type string")
        }
        if let allowed, !allowed.contains(text) {
            throw fail(path, "Unsupported value: \"\(text)\": supported values: " + allowed.map { "\"\($0)\"" }.joined(separator: ", "))
        }
        if text.utf8.count < minLength {
            throw fail(path, "Invalid value: \"\(text)\": \(path) in body should be at least \(minLength) chars long")
        }
        if text.count > maxLength {
            throw fail(path, "Too long: may not be more than \(maxLength) bytes")
        }
        if let (expression, matches) = pattern, !matches(text) {
            throw fail(path, "Invalid value: \"\(text)\": \(path) in body should match '\(expression)'")
        }
        return text
    }

    public func integer(_ value: Any?, _ path: String, required: Bool = false, minimum: Int = .min, maximum: Int = .max) throws(ConfigError) -> Int? {
        guard let value = present(value) else {
            if required { throw fail(path, "Required value") }
            return nil
        }
        guard let number = value as? Int, !(value is Bool) else {
            throw fail(path, "Invalid value: \(Self.describe(value)): \(path) in body must be of type integer")
        }
        if number < minimum {
            throw fail(path, "Invalid value: \(number): \(path) in body should be greater than or equal to \(minimum)")
        }
        if number > maximum {
            throw fail(path, "Invalid value: \(number): \(path) in body should be less than or equal to \(maximum)")
        }
        return number
    }

    public func number(_ value: Any?, _ path: String, required: Bool = false) throws(ConfigError) -> Double? {
        guard let value = present(value) else {
            if required { throw fail(path, "Required value") }
            return nil
        }
        if let number = value as? Int, !(value is Bool) { return Double(number) }
        if let number = value as? Double { return number }
        throw fail(path, "Invalid value: \(Self.describe(value)): \(path) in body must be of type number")
    }

    public func bool(_ value: Any?, _ path: String) throws(ConfigError) -> Bool? {
        guard let value = present(value) else { return nil }
        guard let flag = value as? Bool else {
            throw fail(path, "Invalid value: \(Self.describe(value)): \(path) in body must be of type boolean")
        }
        return flag
    }

    /// A value as the API server quotes it in messages.
    static func describe(_ value: Any) -> String {
        switch value {
        case let text as String: return "\"\(text)\""
        case is [Any]: return "\"array\""
        case is [String: Any]: return "\"object\""
        default: return "\(value)"
        }
    }
}

/// A YAML value, with an explicit `null` (which Yams decodes as NSNull) read as absent.
func present(_ value: Any?) -> Any? {
    guard let value, !(value is NSNull) else { return nil }
    return value
}

/// Kubernetes name and label rules, as the CRDs' patterns spell them.
public enum KubernetesPatterns {
    /// A DNS subdomain (RFC 1123): `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`.
    static let groupExpression = #"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"#
    static func isGroup(_ text: String) -> Bool {
        text.isEmpty || text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isDNSLabel($0) }
    }

    /// `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`.
    static let kindExpression = #"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"#
    static func isKind(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first.isASCIILetter else { return false }
        return text.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "-" } && text.last != "-"
    }

    /// A label value: `^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`, at most 63 characters.
    static let labelValueExpression = #"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"#
    public static func isLabelValue(_ text: String) -> Bool {
        guard !text.isEmpty else { return true }
        let scalars = Array(text.unicodeScalars)
        let alphanumeric: (Unicode.Scalar) -> Bool = { $0.isASCIILetter || $0.isASCIIDigit }
        guard alphanumeric(scalars.first!), alphanumeric(scalars.last!) else { return false }
        return scalars.allSatisfy { alphanumeric($0) || $0 == "-" || $0 == "_" || $0 == "." }
    }

    /// A label key: an optional DNS-subdomain prefix and `/`, then a name segment (≤ 63).
    public static func isLabelKey(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let name = parts.last, !name.isEmpty, name.count <= 63, isLabelValue(String(name)) else { return false }
        if parts.count == 2 { return !parts[0].isEmpty && parts[0].count <= 253 && isGroup(String(parts[0])) }
        return true
    }

    private static func isDNSLabel(_ part: Substring) -> Bool {
        let scalars = Array(part.unicodeScalars)
        guard let first = scalars.first, let last = scalars.last else { return false }
        let lowerAlphanumeric: (Unicode.Scalar) -> Bool = { ("a"..."z").contains($0) || $0.isASCIIDigit }
        return lowerAlphanumeric(first) && lowerAlphanumeric(last) && scalars.allSatisfy { lowerAlphanumeric($0) || $0 == "-" }
    }
}

extension Unicode.Scalar {
    var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
