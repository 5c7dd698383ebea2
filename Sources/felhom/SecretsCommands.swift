import ArgumentParser
import FelhomAPI
import FelhomCore
import FelhomHTTP
import FelhomHubClient
import Foundation

/// `felhom secrets …`: work with `TRC_SECRETS_V1` files (docs/controller.md).
struct SecretsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secrets", abstract: "Work with TRC_SECRETS_V1 secrets files.", subcommands: [Render.self, Export.self, Check.self])

    /// Reads and parses a secrets file; a bad one is an error naming the file and the line.
    static func load(_ path: String) throws -> SecretsFile {
        guard let data = FileManager.default.contents(atPath: path) else { throw SimpleError("cannot read secrets file '\(path)'") }
        do { return try SecretsFile(parsing: Array(data)) } catch { throw SimpleError("\(path): \(error)") }
    }

    struct Render: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the exact TRC_SECRETS_V1 file of one bundle, from a bundles file or from the hub.",
            discussion: """
                --file BUNDLES.json holds {"NAME": {"KEY": "value" or {"base64": "…"}}} (what you upload with \
                PUT /api/v1/guests/{id}/secrets/NAME as {"secrets": …}) or the hub's own answer \
                {"bundles": [{"bundle", "file", …}]}. With --hub URL --guest ID the latest version comes from the hub; \
                the hub serves values only to the guest's own key: give it as FELHOM_GUEST_KEY. The bytes are \
                written to stdout exactly as the controller writes /run/secrets/NAME.env.
                """)
        @Option(help: "The bundle name (e.g. platform).") var env: String
        @Option(help: "A bundles JSON file.") var file: String?
        @Option(help: "Hub URL, e.g. https://hub.example:8443.") var hub: String?
        @Option(help: "The guest id on the hub (with --hub).") var guest: String?
        @Option(name: .customLong("hub-fingerprint"), help: "Pin the hub's TLS leaf certificate (SHA-256).") var hubFingerprint: String?
        @Option(name: .customLong("hub-ca"), help: "Trust this CA file for the hub's certificate.") var hubCA: String?

        func validate() throws {
            if (file == nil) == (hub == nil) { throw ValidationError("give either --file BUNDLES.json or --hub URL --guest ID") }
            if hub != nil && guest == nil { throw ValidationError("--hub needs --guest ID") }
        }

        func run() async throws {
            let bytes: [UInt8]
            if let file {
                guard let data = FileManager.default.contents(atPath: file) else { throw SimpleError("cannot read bundles file '\(file)'") }
                bytes = try SecretsCommand.render(bundle: env, fromBundlesJSON: data, source: file)
            } else {
                bytes = try await fromHub()
            }
            FileHandle.standardOutput.write(Data(bytes))
        }

        func fromHub() async throws -> [UInt8] {
            guard let key = ProcessInfo.processInfo.environment["FELHOM_GUEST_KEY"], !key.isEmpty else {
                throw ValidationError("the hub serves secret values only to the guest's own key: set FELHOM_GUEST_KEY")
            }
            let trust = try hubTrust(fingerprint: hubFingerprint, caFile: hubCA)
            let client: HubClient
            do { client = try HubClient(url: hub ?? "", key: Secret(key), trust: trust) } catch { throw ValidationError("\(error)") }
            let bundles: [SecretBundleView]
            do { bundles = try await client.secretBundles(guestID: guest ?? "") } catch {
                throw SimpleError("cannot read the guest's secret bundles from the hub: \(error)")
            }
            guard let view = bundles.first(where: { $0.bundle == env }) else {
                throw SimpleError(
                    "the hub has no bundle '\(TerminalText.escaped(env))' for this guest (it has: \(SecretsCommand.names(bundles.map(\.bundle))))")
            }
            guard let text = view.file, let data = Data(base64Encoded: text) else {
                throw SimpleError("the hub gave key names only: values are served to the guest's own key (FELHOM_GUEST_KEY), not the operator's")
            }
            // The hub's bytes are checked like any file before they are printed.
            do { return try SecretsFile(parsing: Array(data)).render() } catch {
                throw SimpleError("bundle '\(env)' from the hub is not a valid TRC_SECRETS_V1 file: \(error)")
            }
        }
    }

    static func names(_ list: [String]) -> String {
        list.isEmpty ? "none" : list.sorted().map { TerminalText.escaped($0) }.joined(separator: ", ")
    }

    /// The file bytes of `bundle` from a bundles JSON document (either form); errors name the
    /// source and what is wrong, never a value.
    static func render(bundle: String, fromBundlesJSON data: Data, source: String) throws -> [UInt8] {
        let doc: JSONValue
        do { doc = try JSONValue.parse(data) } catch { throw SimpleError("\(source) is not JSON: \(error)") }
        guard case .object(let top) = doc else { throw SimpleError("\(source) must be a JSON object of bundles") }
        if case .array(let list)? = top["bundles"] {
            // The hub's answer: {"bundles": [{"bundle", "file": base64, …}]}.
            let names = list.compactMap { $0["bundle"]?.stringValue }
            guard let view = list.first(where: { $0["bundle"]?.stringValue == bundle }) else {
                throw SimpleError("\(source) has no bundle '\(TerminalText.escaped(bundle))' (it has: \(SecretsCommand.names(names)))")
            }
            guard let text = view["file"]?.stringValue, let bytes = Data(base64Encoded: text) else {
                throw SimpleError("\(source): bundle '\(bundle)' has no file bytes (an operator's listing carries key names only)")
            }
            do { return try SecretsFile(parsing: Array(bytes)).render() } catch { throw SimpleError("\(source): bundle '\(bundle)': \(error)") }
        }
        guard let entry = top[bundle] else {
            throw SimpleError("\(source) has no bundle '\(TerminalText.escaped(bundle))' (it has: \(SecretsCommand.names(Array(top.keys))))")
        }
        let upload: SecretBundleUpload
        do {
            upload = SecretBundleUpload(secrets: try JSONDecoder().decode([String: SecretValue].self, from: try JSONEncoder().encode(entry)))
        } catch {
            throw SimpleError("\(source): bundle '\(bundle)' must map KEY to a string or {\"base64\": …}")
        }
        do { return try upload.file().render() } catch { throw SimpleError("\(source): bundle '\(bundle)': \(error.message)") }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the file's pairs as POSIX sh assignments: eval \"$(felhom secrets export FILE)\" sets each exactly.")
        @Argument(help: "The secrets file (e.g. /run/secrets/platform.env).") var file: String

        func run() async throws {
            let secrets = try SecretsCommand.load(file)
            do { FileHandle.standardOutput.write(Data(try secrets.shellExport().utf8)) } catch { throw SimpleError("\(file): \(error)") }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a secrets file; print its keys (never the values).")
        @Argument(help: "The secrets file.") var file: String

        func run() async throws {
            let secrets = try SecretsCommand.load(file)
            print("\(file): valid TRC_SECRETS_V1, \(secrets.entries.count) key(s): \(secrets.entries.map(\.key).joined(separator: ", "))")
        }
    }
}
