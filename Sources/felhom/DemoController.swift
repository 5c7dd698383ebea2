import FelhomAPI
import FelhomController
import FelhomCore
import FelhomHubClient
import Foundation
import Subprocess

/// The demo's controller part: a guest's controller with two stacks (an app that reads the
/// guest's secrets file, and a protected proxy) on a real Docker engine when one runs here with the
/// demo image, else on a simulated stack runtime — said plainly either way.
struct DemoController: Sendable {
    /// The image the demo's stacks run (`FELHOM_DEMO_IMAGE`; scripts/docker-engine makes the default).
    static let image = ProcessInfo.processInfo.environment["FELHOM_DEMO_IMAGE"] ?? "felhom/busybox:1"

    struct Result {
        var runtime = "simulated"
        var deployed = false
        var watchdogRestarted = false
        var secretsRotated = false
        var reportAccepted = false
        var all: Bool { deployed && watchdogRestarted && secretsRotated && reportAccepted }
    }

    let root: String
    let op: HubClient
    let hubURL: String
    let hostID: String
    let mode: String
    let info: @Sendable (String) -> Void

    /// Whether `docker compose` answers and the demo image is present.
    static func dockerUsable() async -> (Bool, String) {
        func ok(_ args: [String]) async -> Bool {
            (try? await Subprocess.run(.name("docker"), arguments: Arguments(args), output: .discarded, error: .discarded))?.terminationStatus
                .isSuccess ?? false
        }
        guard await ok(["compose", "ls"]) else { return (false, "no Docker engine with Compose v2 answers here") }
        guard await ok(["image", "inspect", image]) else {
            return (false, "Docker runs but the image \(image) is not here (scripts/docker-engine makes it; or set FELHOM_DEMO_IMAGE)")
        }
        return (true, "")
    }

    func run() async throws -> Result {
        var result = Result()
        let dir = root + "/controller"
        let stacksDir = dir + "/stacks"
        let secretsDir = dir + "/secrets"
        let app = "felhom-demo-photos"
        let proxy = "felhom-demo-traefik"
        var useDocker = mode == "docker"
        if mode == "auto" {
            let (usable, why) = await Self.dockerUsable()
            useDocker = usable
            if !usable { info("\(why): the controller runs a SIMULATED stack runtime (in memory, no containers)") }
        }
        result.runtime = useDocker ? "docker" : "simulated"
        if useDocker {
            info("real Docker engine: stacks run image \(Self.image)")
        } else if mode == "simulated" {
            info("--stack-runtime simulated: the controller runs a SIMULATED stack runtime (in memory, no containers)")
        }
        let runtime: any ComposeRuntime = useDocker ? DockerCompose() : SimulatedCompose(binds: [app: [secretsDir + "/platform.env"]])
        for (name, mounts) in [(app, "    volumes: [\"\(secretsDir)/platform.env:/run/secrets/platform.env:ro\"]\n"), (proxy, "")] {
            try FileManager.default.createDirectory(atPath: stacksDir + "/" + name, withIntermediateDirectories: true)
            let yaml = """
                services:
                  app:
                    image: \(Self.image)
                    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
                    stop_grace_period: 1s

                """
            try (yaml + mounts).write(toFile: stacksDir + "/\(name)/compose.yaml", atomically: true, encoding: .utf8)
        }
        let stacks = Stacks(directory: stacksDir, protectedNames: [proxy], runtime: runtime)

        // The guest, its key, and its secret bundle on the hub.
        let guest = try await op.createGuest(hostID: hostID, name: "photos", idempotencyKey: "demo-controller")
        let asGuest = try HubClient(url: hubURL, key: guest.apiKey)
        func upload(_ value: String) async throws -> Int64 {
            try await op.send(
                "PUT", "/api/v1/guests/\(guest.id)/secrets/platform", body: SecretBundleUpload(secrets: ["DB_PASSWORD": .text(value)]),
                as: SecretBundleView.self
            ).version
        }
        let sync = SecretsSync(
            stacks: stacks, writer: SecretsWriter(directory: secretsDir), stateDir: dir + "/state", healthTimeout: .seconds(60),
            log: { [info] in info("controller: \($0)") })
        _ = try await upload("demo-" + UUID().uuidString.prefix(8).lowercased())
        _ = try await sync.apply(try await asGuest.secretBundles(guestID: guest.id))
        for name in [app, proxy] { try await stacks.deploy(name) }
        let listed = try await stacks.list()
        result.deployed = listed.allSatisfy { $0.state == .running }
        info("stacks: " + listed.map { "\($0.name) \($0.state.rawValue)\($0.protected ? " (protected)" : "")" }.joined(separator: ", "))

        // The watchdog starts a crashed stack again.
        if useDocker {
            _ = try? await Subprocess.run(.name("docker"), arguments: ["kill", "\(app)-app-1"], output: .discarded, error: .discarded)
        } else {
            (runtime as? SimulatedCompose)?.crash(project: app)
        }
        let watchdog = Watchdog(stacks: stacks, stateDir: dir + "/state", log: { [info] in info("controller: \($0)") })
        let crashed = try await stacks.status(app).state
        let actions = try await watchdog.pass()
        let after = try await stacks.status(app).state
        result.watchdogRestarted = crashed != .running && actions[app] == .started && after == .running
        info(result.watchdogRestarted ? "watchdog: the crashed \(app) runs again" : "watchdog did NOT restart \(app)")

        // A new bundle version: the app stack restarts (the protected proxy does not use it).
        let version = try await upload("rotated-" + UUID().uuidString.prefix(8).lowercased())
        let rotation = try await sync.apply(try await asGuest.secretBundles(guestID: guest.id))
        result.secretsRotated = rotation.restarted == [app] && rotation.failed == nil
        info(result.secretsRotated ? "secrets: version \(version) written; \(app) restarted to read it" : "secrets rotation did NOT go as expected")

        // The guest report reaches the hub.
        let report = try await GuestReporter(stacks: stacks, stateDir: dir + "/state").report()
        result.reportAccepted = (try? await asGuest.postGuestReport(report)) != nil
        info(result.reportAccepted ? "report: the hub took the guest's report (\(report.stacks.count) stacks)" : "report NOT accepted")
        return result
    }

    /// Removes the demo's stacks (containers and networks) when they ran on Docker.
    func cleanUp() async {
        let stacks = Stacks(directory: root + "/controller/stacks", protectedNames: [], runtime: DockerCompose())
        for name in (try? stacks.names()) ?? [] { try? await stacks.remove(name) }
    }
}
