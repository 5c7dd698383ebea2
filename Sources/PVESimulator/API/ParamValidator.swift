import FelhomCore
import Foundation

/// Checks request parameters against the endpoint's schema as pve-common's `JSONSchema.pm` does,
/// with the same per-parameter messages (`property is missing and it is not optional`, …).
enum ParamValidator {
    /// The parsed schema subset (`"METHOD /path/{x}"` → `{parameters, returns, allowtoken}`).
    static let endpoints: [String: JSONValue] = {
        guard let doc = try? JSONValue.parse(PVESchemaSubset.json), let o = doc.objectValue else {
            preconditionFailure("embedded PVE schema subset does not parse")
        }
        return o
    }()

    /// The property schema for `key`, resolving indexed names (`mp0` → `mp[n]`).
    static func property(_ key: String, in props: [String: JSONValue]) -> JSONValue? {
        if let p = props[key] { return p }
        let base = key.prefix { !$0.isNumber }
        let index = key.dropFirst(base.count)
        if !index.isEmpty, index.allSatisfy(\.isNumber) { return props["\(base)[n]"] }
        return nil
    }

    /// Per-parameter errors for `params` (empty when valid).
    static func validate(_ params: [String: JSONValue], schema: JSONValue) -> [String: String] {
        let props = schema["properties"]?.objectValue ?? [:]
        let additional = schema["additionalProperties"]?.lenientBool ?? true
        var errors: [String: String] = [:]
        for (key, value) in params {
            guard let prop = property(key, in: props) else {
                if !additional {
                    errors[key] = "property is not defined in schema and the schema does not allow additional properties"
                }
                continue
            }
            if let e = check(value, prop) { errors[key] = e }
        }
        for (key, prop) in props where !(prop["optional"]?.lenientBool ?? false) && !key.hasSuffix("[n]") {
            if params[key] == nil { errors[key] = "property is missing and it is not optional" }
        }
        return errors
    }

    static func text(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return b ? "1" : "0"
        default: return v.serializedString()
        }
    }

    static func check(_ value: JSONValue, _ prop: JSONValue) -> String? {
        let type = prop["type"]?.stringValue ?? "string"
        let s = text(value)
        switch type {
        case "boolean":
            switch value {
            case .bool: return nil
            case .int(let i) where i == 0 || i == 1: return nil
            case .string(let t) where t == "0" || t == "1": return nil
            default: return "type check ('boolean') failed - got '\(s)'"
            }
        case "integer":
            guard s.range(of: #"^[+-]?\d+$"#, options: .regularExpression) != nil, let i = Double(s) else {
                return "type check ('integer') failed - got '\(s)'"
            }
            return range(i, prop)
        case "number":
            guard s.range(of: #"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"#, options: .regularExpression) != nil,
                let d = Double(s)
            else { return "type check ('number') failed - got '\(s)'" }
            return range(d, prop)
        case "array", "object":
            return nil
        default:
            if let max = prop["maxLength"]?.lenientInt, s.count > max { return "value may only be \(max) characters long" }
            if let min = prop["minLength"]?.lenientInt, s.count < min { return "value must be at least \(min) characters long" }
            if let options = prop["enum"]?.arrayValue?.compactMap(\.stringValue), !options.contains(s) {
                return "value '\(s)' does not have a value in the enumeration '\(options.joined(separator: ", "))'"
            }
            if let pattern = prop["pattern"]?.stringValue, !pattern.hasPrefix("(?^"),
                s.range(of: "^(?:\(pattern))$", options: .regularExpression) == nil
            {
                return "value does not match the regex pattern"
            }
            if let format = prop["format"]?.stringValue { return checkFormat(format, s) }
            return nil
        }
    }

    static func range(_ v: Double, _ prop: JSONValue) -> String? {
        if let min = prop["minimum"]?.lenientDouble, v < min { return "value must have a minimum value of \(num(min))" }
        if let max = prop["maximum"]?.lenientDouble, v > max { return "value must have a maximum value of \(num(max))" }
        return nil
    }

    static func num(_ d: Double) -> String { d == d.rounded() ? String(Int64(d)) : String(d) }

    static func checkFormat(_ format: String, _ s: String) -> String? {
        switch format {
        case "pve-node":
            return s.range(of: #"^(?i:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)$"#, options: .regularExpression) == nil
                ? "invalid format - value does not look like a valid node name" : nil
        case "pve-storage-id":
            return s.range(of: #"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9])$"#, options: .regularExpression) == nil
                ? "invalid format - storage ID '\(s)' contains illegal characters" : nil
        case "pve-configid":
            return s.range(of: #"^(?i:[a-z][a-z0-9_\-]+)$"#, options: .regularExpression) == nil
                ? "invalid format - invalid configuration ID '\(s)'" : nil
        case "pve-vmid-list":
            return s.range(of: #"^\d+([,;\s]+\d+)*$"#, options: .regularExpression) == nil
                ? "invalid format - value '\(s)' does not look like a valid vmid list" : nil
        default:
            return nil
        }
    }
}
