import ArgumentParser
import FelhomAPI
import FelhomCore
import FelhomHubClient
import Foundation
import ObjectStore

extension SnapshotCommand {
    /// `felhom snapshot prune`: the retention job (docs/object-storage.md). It runs with its own
    /// S3 credentials (the only ones allowed to delete) and the hub's operator key: it lists a
    /// host's records, keeps the newest `--keep` complete snapshots per volume, deletes the older
    /// objects, and only then marks their records deleted on the hub.
    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a host's volume snapshots beyond the newest --keep per volume (objects first, then the hub's records).",
            discussion: """
                S3 credentials come from FELHOM_S3_ACCESS_KEY_ID and FELHOM_S3_SECRET_ACCESS_KEY (never from arguments: they \
                show in ps); the hub's operator key from FELHOM_OPERATOR_KEY or --operator-key.
                """)
        @Option(help: "Hub URL, e.g. https://hub.example:8443 (http:// only on loopback).") var hub: String
        @Option(name: .customLong("operator-key"), help: "Hub operator API key (prefer FELHOM_OPERATOR_KEY).") var operatorKey: String?
        @Option(name: .customLong("hub-fingerprint"), help: "Pin the hub's TLS leaf certificate (SHA-256).") var hubFingerprint: String?
        @Option(name: .customLong("hub-ca"), help: "Trust this CA file for the hub's certificate.") var hubCA: String?
        @Option(help: "The host whose snapshots are pruned.") var host: String
        @Option(name: .customLong("s3-endpoint"), help: "The S3 endpoint URL.") var endpoint: String
        @Option(name: .customLong("s3-region"), help: "The S3 region.") var region: String
        @Option(name: .customLong("s3-bucket"), help: "The bucket.") var bucket: String
        @Option(name: .customLong("s3-addressing"), help: "path (default) or virtual.") var addressing: String = "path"
        @Option(help: "Complete snapshots kept per volume (at least 1).") var keep: Int = VolumeSnapshotRetention.defaultKeep
        @Flag(name: .customLong("dry-run"), help: "Only print what would be deleted.") var dryRun = false

        func run() async throws {
            let env = ProcessInfo.processInfo.environment
            guard let apiKey = operatorKey ?? env["FELHOM_OPERATOR_KEY"], !apiKey.isEmpty else {
                throw ValidationError("give the hub's operator key with FELHOM_OPERATOR_KEY or --operator-key")
            }
            guard keep >= 1 else { throw ValidationError("--keep must be at least 1: the newest complete snapshot is never deleted") }
            guard let mode = S3Client.Addressing(rawValue: addressing) else { throw ValidationError("--s3-addressing must be path or virtual") }
            let client: HubClient
            do { client = try HubClient(url: hub, key: Secret(apiKey), trust: try hubTrust(fingerprint: hubFingerprint, caFile: hubCA)) } catch {
                throw ValidationError("\(error)")
            }
            let records: [VolumeSnapshotRecord]
            do { records = try await client.volumeSnapshots(hostID: host) } catch {
                throw SimpleError("cannot list the snapshots of \(host): \(error)")
            }
            let doomed = VolumeSnapshotRetention.plan(records, keep: keep)
            print(
                "\(records.filter { $0.state == "complete" }.count) complete snapshots of \(host); \(doomed.count) beyond the newest \(keep) per volume"
            )
            for r in doomed { print("  \(dryRun ? "would delete" : "delete") \(r.volumeID) \(r.snapshotID) \(r.objectKey)") }
            guard !dryRun, !doomed.isEmpty else { return }
            guard let access = env["FELHOM_S3_ACCESS_KEY_ID"], let secret = env["FELHOM_S3_SECRET_ACCESS_KEY"], !access.isEmpty, !secret.isEmpty
            else {
                throw ValidationError("give the retention job's S3 credentials in FELHOM_S3_ACCESS_KEY_ID and FELHOM_S3_SECRET_ACCESS_KEY")
            }
            let s3: S3Client
            do {
                s3 = try S3Client(
                    settings: .init(
                        endpoint: endpoint, region: region, bucket: bucket, credentials: .init(accessKeyID: access, secretAccessKey: secret),
                        addressing: mode))
            } catch { throw ValidationError(error.message) }
            // Objects first: a record marked deleted whose object survived would be an unbilled leak
            // nobody sees; the other way round, the next run simply deletes again.
            do { try await s3.deleteObjects(keys: doomed.map(\.objectKey)) } catch { throw SimpleError("cannot delete the objects: \(error)") }
            do {
                let marked = try await client.markVolumeSnapshotsDeleted(hostID: host, snapshotIDs: doomed.map(\.snapshotID))
                print("deleted \(doomed.count) objects; \(marked) records marked deleted on the hub")
            } catch { throw SimpleError("the objects are deleted, but the hub did not take the marks (run again): \(error)") }
        }
    }
}
