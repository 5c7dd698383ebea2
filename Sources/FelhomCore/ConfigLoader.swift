import Foundation

/// Loads a component's JSON configuration file and overlays environment variables.
///
/// Each overridable setting is named by a dotted key path (`pve.token_secret`); its variable is the
/// prefix plus the path in upper case with dots and dashes as underscores (`FELHOM_AGENT_PVE_TOKEN_SECRET`).
/// Values from the environment are typed by the declared ``ConfigKey/Kind`` so a bad value is
/// reported with the variable's name instead of surfacing later as a decoding error.
public struct ConfigLoader: Sendable {
    /// One overridable setting.
    public struct ConfigKey: Sendable {
        /// How an environment string is turned into JSON.
        public enum Kind: Sendable {
            case string, integer, number, boolean
            /// A list of strings; from the environment, comma-separated (`a,b,c`; empty means none).
            case stringList
        }
        public var path: String
        public var kind: Kind
        public init(_ path: String, _ kind: Kind = .string) {
            self.path = path
            self.kind = kind
        }
    }

    public var environmentPrefix: String
    public var keys: [ConfigKey]

    public init(environmentPrefix: String, keys: [ConfigKey]) {
        self.environmentPrefix = environmentPrefix
        self.keys = keys
    }

    /// The environment variable that overrides `path`.
    public func variableName(for path: String) -> String {
        environmentPrefix + "_"
            + path.uppercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_")
    }

    /// Reads `file` (if given), overlays `environment`, and decodes `T`.
    public func load<T: Decodable>(
        _ type: T.Type, file: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> T {
        var doc: JSONValue = .object([:])
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ConfigError(code: .unreadable, message: "cannot read config file '\(file)'")
            }
            do {
                doc = try JSONValue.parse(data)
            } catch let e as JSONValueError {
                throw ConfigError(code: .invalid, message: "config file '\(file)': \(e.message)")
            }
            guard case .object = doc else {
                throw ConfigError(code: .invalid, message: "config file '\(file)': top level must be a JSON object")
            }
        }
        // Operator-written: an unknown key is a typo until proven otherwise (`"databse"` must not
        // silently start with the default database).
        let unknown = KeySchema.paths(keys.map(\.path)).unknownKeys(in: doc)
        if let first = unknown.first {
            let source = file.map { "config file '\($0)'" } ?? "configuration"
            let known = keys.map(\.path).joined(separator: ", ")
            throw ConfigError(
                code: .invalid,
                message: "\(source): unknown key \(first)" + (unknown.count > 1 ? " (and \(unknown.count - 1) more)" : "") + "; known keys: \(known)")
        }
        doc = try overlay(doc, environment: environment)
        do {
            return try JSONDecoder().decode(T.self, from: doc.serialized())
        } catch let e as DecodingError {
            let source = file.map { "config '\($0)' (with environment overrides)" } ?? "configuration"
            throw ConfigError(code: .invalid, message: "\(source): \(e.shortDescription)")
        }
    }

    /// Applies environment overrides to a parsed document.
    public func overlay(_ doc: JSONValue, environment: [String: String]) throws -> JSONValue {
        var result = doc
        for key in keys {
            let name = variableName(for: key.path)
            guard let raw = environment[name] else { continue }
            let value: JSONValue
            switch key.kind {
            case .string: value = .string(raw)
            case .integer:
                guard let i = Int64(raw) else {
                    throw ConfigError(code: .invalid, message: "\(name): expected an integer")
                }
                value = .int(i)
            case .number:
                guard let d = Double(raw) else {
                    throw ConfigError(code: .invalid, message: "\(name): expected a number")
                }
                value = .double(d)
            case .boolean:
                switch raw.lowercased() {
                case "1", "true", "yes", "on": value = .bool(true)
                case "0", "false", "no", "off": value = .bool(false)
                default: throw ConfigError(code: .invalid, message: "\(name): expected true or false")
                }
            case .stringList:
                value = .array(
                    raw.split(separator: ",").map { .string($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 != .string("") })
            }
            result = Self.set(result, path: key.path.split(separator: ".").map(String.init), value: value)
        }
        return result
    }

    private static func set(_ doc: JSONValue, path: [String], value: JSONValue) -> JSONValue {
        guard let first = path.first else { return value }
        var obj = doc.objectValue ?? [:]
        obj[first] = set(obj[first] ?? .object([:]), path: Array(path.dropFirst()), value: value)
        return .object(obj)
    }
}

/// A configuration that could not be loaded. The message names the file or variable, never a value.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case unreadable, invalid }
    public var code: Code
    public var message: String
    public var description: String { "config error (\(code.rawValue)): \(message)" }

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }
}
