import ArgumentParser
import FelhomCore
import Foundation

/// `felhom secrets …`: work with `TRC_SECRETS_V1` files (docs/controller.md).
struct SecretsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secrets", abstract: "Work with TRC_SECRETS_V1 secrets files.", subcommands: [Export.self, Check.self])

    /// Reads and parses a secrets file; a bad one is an error naming the file and the line.
    static func load(_ path: String) throws -> SecretsFile {
        guard let data = FileManager.default.contents(atPath: path) else { throw SimpleError("cannot read secrets file '\(path)'") }
        do { return try SecretsFile(parsing: Array(data)) } catch { throw SimpleError("\(path): \(error)") }
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
