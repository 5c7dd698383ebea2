import Foundation
import Subprocess

enum Fixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func text(_ name: String) throws -> String { try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8) }
    static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: dir.appendingPathComponent(name))) }
}

/// The real OpenSSH peer, when installed (scripts/install-test-deps installs it).
enum OpenSSH {
    static let sshKeygen: String? = ["/usr/bin/ssh-keygen", "/bin/ssh-keygen", "/usr/local/bin/ssh-keygen"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    static var available: Bool {
        // In CI the peer is installed by scripts/install-test-deps: never skip there, fail instead.
        if ProcessInfo.processInfo.environment["CI"] != nil { return true }
        if sshKeygen == nil {
            print("note: ssh-keygen not found: OpenSSH interop tests are skipped (scripts/test installs openssh-client)")
        }
        return sshKeygen != nil
    }
}

struct Run {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program (argv, no shell) with optional stdin bytes.
func run(_ exe: String, _ args: [String], stdin: [UInt8]? = nil, cwd: String? = nil) async throws -> Run {
    let r: ExecutionResult<Void, StringOutput<UTF8>, StringOutput<UTF8>>
    if let stdin {
        r = try await Subprocess.run(
            .path(.init(exe)), arguments: Arguments(args), workingDirectory: cwd.map { .init($0) }, input: .array(stdin),
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
    } else {
        r = try await Subprocess.run(
            .path(.init(exe)), arguments: Arguments(args), workingDirectory: cwd.map { .init($0) },
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
    }
    let code: Int32
    switch r.terminationStatus {
    case .exited(let c): code = Int32(c)
    case .signaled(let s): code = 128 + Int32(s)
    }
    return Run(status: code, stdout: r.standardOutput ?? "", stderr: r.standardError ?? "")
}

func tempDir() throws -> String {
    let d = NSTemporaryDirectory() + "felhom-sig-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// The built `felhom` executable next to the test bundle (or in FELHOM_BIN_DIR).
enum FelhomBinary {
    static let path: String? = {
        var dirs: [String] = []
        if let d = ProcessInfo.processInfo.environment["FELHOM_BIN_DIR"] { dirs.append(d) }
        var u = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            dirs.append(u.path)
            u.deleteLastPathComponent()
        }
        dirs.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug").path)
        return dirs.map { $0 + "/felhom" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
}
