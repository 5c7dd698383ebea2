import ArgumentParser
import Crypto
import FelhomAPI
import FelhomCore
import FelhomHubClient
import Foundation

/// `felhom release publish`: signs a release manifest with the release key on this machine,
/// registers it on the hub, uploads the asset and (with --canary) starts the roll-out
/// (docs/updates.md).
struct ReleaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release", abstract: "Sign and publish agent or controller releases.", subcommands: [Publish.self, Manifest.self])

    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign FILE's manifest (felhom-release-v1), register it, upload FILE, optionally roll it out to canary hosts.")
        @Option(help: "Hub URL, e.g. https://hub.example:8443 (http:// only on loopback).") var hub: String
        @Option(name: .customLong("operator-key"), help: "Hub operator API key (prefer FELHOM_OPERATOR_KEY: arguments show in ps).")
        var operatorKey: String?
        @Option(name: .customLong("hub-fingerprint"), help: "Pin the hub's TLS leaf certificate (SHA-256).") var hubFingerprint: String?
        @Option(name: .customLong("hub-ca"), help: "Trust this CA file for the hub's certificate.") var hubCA: String?
        @Option(help: "agent or controller.") var component: String
        @Option(help: "The release version (MAJOR.MINOR.PATCH[-pre][+build]).") var version: String
        @Option(help: "The binary to release.") var file: String
        @Option(help: "The release signing key (OpenSSH private key; passphrase and FIDO keys go through ssh-keygen).") var key: String
        @Option(help: "Roll out to this canary host right away (repeatable).") var canary: [String] = []

        func run() async throws {
            guard let apiKey = operatorKey ?? ProcessInfo.processInfo.environment["FELHOM_OPERATOR_KEY"], !apiKey.isEmpty else {
                throw ValidationError("give the hub's operator key with FELHOM_OPERATOR_KEY or --operator-key")
            }
            let (manifest, bytes) = try Self.manifest(component: component, version: version, file: file)
            let signature = try await OperatorSigning.sign(bytes, keyPath: key, namespace: ReleaseManifest.namespace)
            let client: HubClient
            do { client = try HubClient(url: hub, key: Secret(apiKey), trust: try hubTrust(fingerprint: hubFingerprint, caFile: hubCA)) } catch {
                throw ValidationError("\(error)")
            }
            let text = String(decoding: bytes, as: UTF8.self)
            let view = try await client.createRelease(NewRelease(manifest: text, signature: signature))
            print("registered \(view.component) \(view.version) (sha256 \(view.sha256), \(view.size) bytes, signed by \(view.signer))")
            if view.uploadedAt == nil {
                let data = try Data(contentsOf: URL(fileURLWithPath: file), options: .alwaysMapped)
                guard Int64(data.count) == manifest.size else { throw SimpleError("\(file) changed while it was being published") }
                _ = try await client.uploadReleaseAsset(component: component, version: version, bytes: data)
                print("uploaded \(data.count) bytes")
            } else {
                print("the asset was already uploaded")
            }
            if !canary.isEmpty {
                let r = try await client.rollout(component: component, version: version, RolloutRequest(stage: "canary", hosts: canary))
                for p in r.published { print("canary \(p.hostID): desired generation \(p.generation)") }
                for s in r.skipped { print("canary \(s.hostID) skipped: \(s.reason)") }
            }
        }

        /// The manifest of `file`: its size and SHA-256, read in 1 MiB pieces.
        static func manifest(component: String, version: String, file: String) throws -> (ReleaseManifest, [UInt8]) {
            guard let c = ReleaseManifest.Component(rawValue: component) else { throw ValidationError("--component must be agent or controller") }
            guard let handle = FileHandle(forReadingAtPath: file) else { throw ValidationError("cannot read '\(file)'") }
            defer { try? handle.close() }
            var hasher = SHA256()
            var size: Int64 = 0
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                hasher.update(data: chunk)
                size += Int64(chunk.count)
            }
            let m = ReleaseManifest(
                component: c, version: version, sha256: hasher.finalize().map { String(format: "%02x", $0) }.joined(), size: size, createdAt: Date())
            do { return (m, try m.canonicalBytes()) } catch { throw ValidationError(error.description) }
        }
    }

    struct Manifest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print FILE's release manifest (the exact bytes to sign with ssh-keygen -Y sign -n felhom-release-v1), no newline.")
        @Option(help: "agent or controller.") var component: String
        @Option(help: "The release version.") var version: String
        @Option(help: "The binary.") var file: String

        func run() async throws {
            let (_, bytes) = try Publish.manifest(component: component, version: version, file: file)
            FileHandle.standardOutput.write(Data(bytes))
        }
    }
}
