import ArgumentParser
import Crypto
import Foundation
import ObjectStore

/// `felhom snapshot encrypt|decrypt`: the offline tools for volume snapshot objects
/// (docs/formats.md "Volume snapshot object") — disaster recovery without a running agent, and
/// tests. KEY is the snapshot's 32-byte data key (raw, or 64 hex digits).
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Encrypt or decrypt a volume snapshot object offline.",
        subcommands: [Encrypt.self, Decrypt.self, Speed.self, Prune.self])

    struct Encrypt: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Encrypt FILE into a snapshot object (a fresh salt every time; written under a temporary name, renamed at the end).")
        @Option(name: .customLong("key-file"), help: "The 32-byte data key: raw, or 64 hex digits.") var keyFile: String
        @Option(name: .customLong("snapshot-id"), help: "The snapshot id (bound into the key derivation).") var snapshotID: String
        @Option(name: .customLong("in"), help: "The plaintext (a volume image).") var input: String
        @Option(name: .customLong("out"), help: "The object to write.") var output: String
        @Option(name: .customLong("chunk-size"), help: "Plaintext bytes per chunk (default 1 MiB).") var chunkSize: Int = SnapshotFormat
            .defaultChunkSize

        func run() throws {
            SnapshotFormat.keepChunkBuffersInHeap()
            let key = try loadKey(keyFile)
            let started = ContinuousClock.now
            let total = (try? FileManager.default.attributesOfItem(atPath: input)[.size] as? Int) ?? nil
            let progress = Progress(label: "encrypt", total: total)
            do throws(SnapshotFormat.FormatError) {
                let s = try SnapshotFiles.encrypt(
                    input: input, output: output, dataKey: key, snapshotID: snapshotID, chunkSize: chunkSize, progress: progress.update)
                note("encrypted \(s.plaintextBytes) bytes into \(output) (\(s.objectBytes) bytes) in \(started.duration(to: .now))")
            } catch { fail(error) }
        }
    }

    struct Decrypt: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decrypt a snapshot object into FILE, verifying every chunk and the end before FILE appears.")
        @Option(name: .customLong("key-file"), help: "The 32-byte data key: raw, or 64 hex digits.") var keyFile: String
        @Option(name: .customLong("in"), help: "The snapshot object.") var input: String
        @Option(name: .customLong("out"), help: "The plaintext to write (appears only when all of it verified).") var output: String

        func run() throws {
            SnapshotFormat.keepChunkBuffersInHeap()
            let key = try loadKey(keyFile)
            let started = ContinuousClock.now
            let total = (try? FileManager.default.attributesOfItem(atPath: input)[.size] as? Int) ?? nil
            let progress = Progress(label: "decrypt", total: total)
            do throws(SnapshotFormat.FormatError) {
                let s = try SnapshotFiles.decrypt(input: input, output: output, dataKey: key, progress: progress.update)
                note(
                    "decrypted snapshot \(s.snapshotID): \(s.plaintextBytes) bytes into \(output), every chunk verified, in \(started.duration(to: .now))"
                )
            } catch { fail(error) }
        }
    }
}

extension SnapshotCommand {
    struct Speed: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal and open chunks in memory and print the rate (compare with `openssl speed -evp aes-256-gcm -bytes 1048576`).")
        @Option(name: .long, help: "MiB to seal.") var mib: Int = 2048
        @Option(name: .customLong("chunk-size"), help: "Plaintext bytes per chunk.") var chunkSize: Int = SnapshotFormat.defaultChunkSize

        func run() throws {
            SnapshotFormat.keepChunkBuffersInHeap()
            let key = SymmetricKey(size: .bits256)
            let chunks = max(1, mib * (1 << 20) / chunkSize)
            let plain = [UInt8](repeating: 0x5A, count: chunkSize)
            var sealer = SnapshotSealer(dataKey: key, header: try SnapshotFormat.Header(snapshotID: "speed", chunkSize: chunkSize))
            var opener = SnapshotOpener(dataKey: key, header: sealer.header)
            let clock = ContinuousClock()
            var sealTime = Duration.zero
            var openTime = Duration.zero
            for i in 0..<chunks {
                var start = clock.now
                let box = try sealer.sealChunk(plain, last: i == chunks - 1)
                sealTime += start.duration(to: clock.now)
                let chunk = box.ciphertext + box.tag
                start = clock.now
                _ = try opener.openChunk(chunk, last: i == chunks - 1)
                openTime += start.duration(to: clock.now)
            }
            func rate(_ bytes: Int, _ d: Duration) -> String {
                let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
                return String(format: "%.0f MB/s", Double(bytes) / seconds / 1e6)
            }
            print("seal: \(chunks) chunks of \(chunkSize) bytes, \(rate(chunks * chunkSize, sealTime))")
            print("open: \(chunks) chunks of \(chunkSize) bytes, \(rate(chunks * chunkSize, openTime))")
        }
    }
}

func loadKey(_ path: String) throws -> SymmetricKey {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read --key-file '\(path)'") }
    do throws(SnapshotFormat.FormatError) { return try SnapshotFormat.dataKey(fromFile: data) } catch {
        throw ValidationError("--key-file '\(path)': \(error.message)")
    }
}

private func note(_ text: String) { FileHandle.standardError.write(Data("snapshot: \(text)\n".utf8)) }

private func fail(_ error: SnapshotFormat.FormatError) -> Never {
    note("failed (\(error.code.rawValue)): \(error.message); no output was written")
    Foundation.exit(1)
}

/// Progress on stderr for long runs: at most one line per 5 s.
final class Progress {
    let label: String
    let total: Int?
    var last = ContinuousClock.now

    init(label: String, total: Int?) {
        self.label = label
        self.total = total
    }

    func update(_ bytes: Int) {
        guard ContinuousClock.now - last >= .seconds(5) else { return }
        last = .now
        let part = total.map { $0 > 0 ? " of \($0) (\(bytes * 100 / $0) %)" : "" } ?? ""
        FileHandle.standardError.write(Data("snapshot: \(label): \(bytes) bytes\(part)\n".utf8))
    }
}
