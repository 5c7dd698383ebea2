import FelhomCore

/// Lenient typed reads from one JSON object of a Proxmox answer.
///
/// Proxmox does not coerce output to its schema: integers may come as numeric strings (`vmid` before
/// pve-container 5.0.10, `disk` on PVE 6/7), booleans as `0`/`1`, and absent keys mean "not set".
/// Every read says which key and which object failed.
struct JSONFields {
    let object: [String: JSONValue]
    let context: String

    init(_ value: JSONValue, context: String) throws {
        guard case .object(let o) = value else {
            throw PVEError(code: .decoding, message: "\(context): expected an object, got \(value.kindName)")
        }
        object = o
        self.context = context
    }

    private func fail(_ key: String, _ want: String) -> PVEError {
        PVEError(code: .decoding, message: "\(context).\(key): expected \(want), got \(object[key]?.kindName ?? "nothing")")
    }

    func string(_ key: String) throws -> String {
        guard let v = optString(key) else { throw fail(key, "a string") }
        return v
    }

    /// Strings, or numbers printed as strings (PVE sometimes sends `"id": 100`).
    func optString(_ key: String) -> String? {
        switch object[key] {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        default: return nil
        }
    }

    func int(_ key: String) throws -> Int64 {
        guard let v = try optInt(key) else { throw fail(key, "an integer") }
        return v
    }

    func optInt(_ key: String) throws -> Int64? {
        guard let v = object[key], v != .null else { return nil }
        if case .string(let s) = v, s.isEmpty { return nil }
        guard let i = v.lenientInt else { throw fail(key, "an integer") }
        return i
    }

    func double(_ key: String) throws -> Double {
        guard let v = try optDouble(key) else { throw fail(key, "a number") }
        return v
    }

    func optDouble(_ key: String) throws -> Double? {
        guard let v = object[key], v != .null else { return nil }
        if case .string(let s) = v, s.isEmpty { return nil }
        guard let d = v.lenientDouble else { throw fail(key, "a number") }
        return d
    }

    /// 0/1, true/false, "0"/"1"; absent means `nil`.
    func optBool(_ key: String) throws -> Bool? {
        guard let v = object[key], v != .null else { return nil }
        guard let b = v.lenientBool else { throw fail(key, "a boolean (0/1)") }
        return b
    }
}

extension JSONValue {
    /// A short name of the JSON kind, for error messages.
    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
