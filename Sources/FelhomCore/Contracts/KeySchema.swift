/// The keys an operator-written JSON document may contain, to refuse the unknown ones.
///
/// Operator-written documents (config files, desired states) are strict: a typo such as
/// `"databse"` must be an error naming the key, not silently ignored. Documents written by boxes
/// (reports) stay lenient, because a newer agent may send fields an older hub does not know.
public indirect enum KeySchema: Sendable {
    /// Any value; its insides are not checked.
    case any
    /// An object with exactly these keys (each optional).
    case object([String: KeySchema])
    /// An array whose elements follow the schema.
    case array(KeySchema)
    /// An object with free keys (a map), whose values follow the schema.
    case map(KeySchema)

    /// JSON paths (`$.guests[0].nmae`) of keys the schema does not know, in document order.
    public func unknownKeys(in value: JSONValue, path: String = "$") -> [String] {
        switch (self, value) {
        case (.object(let known), .object(let o)):
            var out: [String] = []
            for k in o.keys.sorted() {
                let p = path + "." + k
                if let s = known[k], let v = o[k] { out += s.unknownKeys(in: v, path: p) } else { out.append(p) }
            }
            return out
        case (.array(let element), .array(let a)):
            return a.enumerated().flatMap { element.unknownKeys(in: $0.element, path: path + "[\($0.offset)]") }
        case (.map(let element), .object(let o)):
            return o.keys.sorted().flatMap { k in o[k].map { element.unknownKeys(in: $0, path: path + "." + k) } ?? [] }
        default:
            return []  // a wrong type is the decoder's error to report
        }
    }

    /// The schema of a document whose every setting is one of these dotted paths (`pve.token_id`).
    public static func paths(_ paths: [String]) -> KeySchema {
        var root: [String: [String]] = [:]
        for p in paths {
            let parts = p.split(separator: ".", maxSplits: 1).map(String.init)
            root[parts[0], default: []] += parts.count > 1 ? [parts[1]] : []
        }
        return .object(root.mapValues { $0.isEmpty ? .any : .paths($0) })
    }
}
