import FelhomCore

/// One known event type: who may post it, its severity, whether a customer may choose to be
/// mailed about it, and its English and Hungarian mail phrases (what follows the host's name).
public struct EventType: Sendable {
    public let name: String
    /// `.hub` alone: only the hub writes it; `.host` / `.guest`: keys of that kind may post it.
    public let postedBy: Set<HubEvent.Source>
    /// The severity stored when a key posts it (the hub's, not the client's).
    public let severity: HubEvent.Severity
    /// Whether a customer may choose it in their notification preferences.
    public let customerMailable: Bool
    public let english: String
    public let hungarian: String
    /// Critical and urgent enough to skip the operator's cooldown (a short floor still applies).
    public let immediate: Bool

    init(
        name: String, postedBy: Set<HubEvent.Source>, severity: HubEvent.Severity, customerMailable: Bool, english: String, hungarian: String,
        immediate: Bool = false
    ) {
        self.name = name
        self.postedBy = postedBy
        self.severity = severity
        self.customerMailable = customerMailable
        self.english = english
        self.hungarian = hungarian
        self.immediate = immediate
    }
}

/// The one registry of event types (SPEC §2 "Events"). ``EventPolicy`` decides admission from it,
/// ``Templates`` renders mails from it, and customer preferences offer its mailable types; a test
/// fails if a registered type lacks a phrase in either language.
public enum EventRegistry {
    public static let all: [EventType] = [
        // Written by the hub.
        .init(
            name: "node_stale", postedBy: [.hub], severity: .warning, customerMailable: true,
            english: "has not reported for a while (stale)", hungarian: "egy ideje nem jelentkezett"),
        .init(
            name: "node_down", postedBy: [.hub], severity: .critical, customerMailable: true,
            english: "is DOWN: no report within the down threshold", hungarian: "nem elérhető"),
        .init(
            name: "node_recovered", postedBy: [.hub], severity: .info, customerMailable: true,
            english: "is reporting again (recovered)", hungarian: "újra elérhető"),
        .init(
            name: "expected_backup_missed", postedBy: [.hub], severity: .warning, customerMailable: true,
            english: "has not backed up today (deadline passed)", hungarian: "mai mentése elmaradt"),
        .init(
            name: "backup_overdue", postedBy: [.hub], severity: .warning, customerMailable: true,
            english: "has no completed backup for days (backup overdue)", hungarian: "napok óta nincs sikeres mentése"),
        .init(
            name: "restore_test_overdue", postedBy: [.hub], severity: .warning, customerMailable: true,
            english: "has no passed restore test for days: its backups are not proven restorable",
            hungarian: "napok óta nincs sikeres visszaállítási próbája: a mentései nem igazoltan visszaállíthatók"),
        .init(
            name: "op_applied", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "applied an operator-signed operation", hungarian: "végrehajtott egy üzemeltetői műveletet"),
        .init(
            name: "op_rejected", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "REJECTED an operator-signed operation", hungarian: "elutasított egy üzemeltetői műveletet"),
        .init(
            name: "host_enrolled", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "was enrolled", hungarian: "csatlakozott"),
        .init(
            name: "keys_revoked", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "— API keys were revoked", hungarian: "— API-kulcsok visszavonva"),
        .init(
            name: "desired_published", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "received a new desired state", hungarian: "új beállítást kapott"),
        .init(
            name: "operator_request", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "was asked for a backup or restore test now", hungarian: "azonnali mentést vagy visszaállítási próbát kapott"),
        .init(
            name: "guest_rolled_back", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "rolled a guest back to a snapshot (operator-signed, handed in by its controller)",
            hungarian: "egy vendéget pillanatképre állított vissza (üzemeltető által aláírva, a vezérlő kérésére)"),
        .init(
            name: "bulk_volume_in_backup", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— a bulk volume (media) is included in every backup: set backup=0 on it",
            hungarian: "— egy nagy kötet (média) minden mentésbe belekerül"),
        .init(
            name: "dr_recovered", postedBy: [.host], severity: .warning, customerMailable: true,
            english: "was recovered on a new box from its backups", hungarian: "új eszközre lett visszaállítva a mentéseiből"),
        .init(
            name: "dr_incomplete", postedBy: [.host], severity: .critical, customerMailable: false,
            english: "was recovered on a new box, but NOT everything came back", hungarian: "visszaállítása nem teljes"),
        .init(
            name: "storage_detected", postedBy: [.host], severity: .info, customerMailable: false,
            english: "— a new disk was found: assign it a policy (label, role) in the desired state",
            hungarian: "— új lemez csatlakozott: adj meg hozzá szabályt"),
        .init(
            name: "storage_policy_unknown_disk", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— the desired state names a disk this box has never seen", hungarian: "— a beállítás egy ismeretlen lemezt nevez meg"),
        .init(
            name: "storage_mount_failed", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— an assigned disk could not be mounted", hungarian: "— egy lemezt nem sikerült csatolni"),
        .init(
            name: "recovery_pending", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— a replacement box waits for `felhom-agent recover` before it provisions anything",
            hungarian: "— a csereeszköz a helyreállításra vár, addig nem hoz létre semmit"),
        .init(
            name: "route_unhealthy", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— a public route does not work: its listener or its backend fails (the reason says which)",
            hungarian: "— egy nyilvános útvonal nem működik"),
        .init(
            name: "quotas_changed", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— the customer's quotas were changed", hungarian: "— az ügyfél keretei megváltoztak"),
        .init(
            name: "quota_lowered_below_usage", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "— a quota is now below what the customer uses (nothing was removed; growth is refused)",
            hungarian: "— egy keret a jelenlegi használat alá került (semmi sem törlődött; bővítés nem lehetséges)"),
        .init(
            name: "guest_placed", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— a new guest was placed on this host (draft)", hungarian: "— egy új vendég erre a gépre került (piszkozat)"),
        .init(
            name: "volume_snapshot_completed", postedBy: [.host], severity: .info, customerMailable: false,
            english: "— a volume was snapshotted to object storage, encrypted", hungarian: "— egy kötet titkosított pillanatképe elkészült"),
        .init(
            name: "volume_snapshot_failed", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— a volume snapshot to object storage failed (the reason says why; the snapshot LV was removed)",
            hungarian: "— egy kötet pillanatképe nem sikerült"),
        .init(
            name: "route_healthy", postedBy: [.host], severity: .info, customerMailable: false,
            english: "— a public route works again", hungarian: "— egy nyilvános útvonal ismét működik"),
        .init(
            name: "storage_attached", postedBy: [.host], severity: .info, customerMailable: false,
            english: "— an assigned disk is mounted and Proxmox can use it", hungarian: "— egy kijelölt lemez csatolva, a Proxmox használhatja"),
        .init(
            name: "storage_pve_failed", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— the Proxmox storage of an assigned disk could not be added or updated",
            hungarian: "— egy kijelölt lemez Proxmox-tárolóját nem sikerült felvenni vagy módosítani"),
        .init(
            name: "escrow_verified", postedBy: [.host], severity: .info, customerMailable: false,
            english: "— the escrow drill opened the hub's copy of the backup key", hungarian: "— a kulcsletét-próba sikerült"),
        .init(
            name: "escrow_drill_failed", postedBy: [.host], severity: .critical, customerMailable: false,
            english: "— the escrow drill FAILED: the hub's copy of the backup key does not open to the key in use",
            hungarian: "— a kulcsletét-próba SIKERTELEN: a mentési kulcs letétje nem nyitható"),
        .init(
            name: "controller_healed", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— a silent controller was restarted and reports again",
            hungarian: "— egy néma vezérlő újraindult és ismét jelentkezik"),
        .init(
            name: "controller_unhealthy", postedBy: [.host], severity: .critical, customerMailable: false,
            english: "— a controller stays silent after a restart of it and of its guest",
            hungarian: "— egy vezérlő a saját és a vendég újraindítása után is néma"),
        .init(
            name: "retrieval_unlocked", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— the operator lifted a customer's retrieval lock", hungarian: "— az üzemeltető feloldotta a letöltés zárolását"),
        .init(
            name: "operator_key_removed", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "— an operator signing key was removed from the hub", hungarian: "— egy üzemeltetői aláírókulcs törölve lett a hubról"),
        .init(
            name: "op_expired", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "— a queued operation expired before it was applied", hungarian: "— egy várakozó művelet lejárt, mielőtt végrehajtották volna"),
        .init(
            name: "op_cancelled", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— a queued operation was cancelled before delivery", hungarian: "— egy várakozó műveletet visszavontak kézbesítés előtt"),
        .init(
            name: "retrieval_locked", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "— a customer's retrieval was locked after repeated wrong passphrases",
            hungarian: "— a letöltés zárolva lett az ismételt hibás jelszavak miatt"),
        .init(
            name: "geo_enabled", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— geo rules enabled", hungarian: "— földrajzi szabályok bekapcsolva"),
        .init(
            name: "geo_disabled", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— geo rules disabled", hungarian: "— földrajzi szabályok kikapcsolva"),
        .init(
            name: "geo_removed", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— geo rules removed", hungarian: "— földrajzi szabályok törölve"),
        .init(
            name: "host_blocked", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "was BLOCKED by the operator", hungarian: "üzemeltetői zárolás alá került"),
        .init(
            name: "host_unblocked", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "was unblocked by the operator", hungarian: "zárolása feloldva"),
        .init(
            name: "customer_suspended", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "— its customer was SUSPENDED by the operator", hungarian: "— az ügyfél felfüggesztve"),
        .init(
            name: "customer_resumed", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— its customer was resumed", hungarian: "— az ügyfél újra aktív"),
        .init(
            name: "generation_not_applied", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "has not applied its published desired state in time (it reports, but is stuck)",
            hungarian: "nem alkalmazta időben az új beállítást"),
        .init(
            name: "quota_exceeded", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "— a desired-state change was refused: it would exceed the customer's quota",
            hungarian: "— egy módosítás elutasítva: túllépné az ügyfél keretét"),
        .init(
            name: "release_created", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— a signed release was registered", hungarian: "— új aláírt kiadás került rögzítésre"),
        .init(
            name: "release_rollout", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "was given a new release to install", hungarian: "új kiadást kapott telepítésre"),
        // Posted by host keys (the agent).
        .init(
            name: "backup_completed", postedBy: [.host], severity: .info, customerMailable: false,
            english: "completed a backup", hungarian: "mentése elkészült"),
        .init(
            name: "backup_unencrypted", postedBy: [.host], severity: .critical, customerMailable: false,
            english: "stored a backup WITHOUT its encryption key: counted as failed",
            hungarian: "titkosítás nélkül mentett: a mentés sikertelennek számít", immediate: true),
        .init(
            name: "backup_failed", postedBy: [.host], severity: .critical, customerMailable: true,
            english: "reported a FAILED backup", hungarian: "mentése nem sikerült"),
        .init(
            name: "restore_test_passed", postedBy: [.host], severity: .info, customerMailable: false,
            english: "passed its restore test", hungarian: "visszaállítási próbája sikerült"),
        .init(
            name: "restore_test_failed", postedBy: [.host], severity: .critical, customerMailable: true,
            english: "FAILED its restore test", hungarian: "visszaállítási próbája nem sikerült"),
        .init(
            name: "op_refused", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "refused an operation that needs the operator's signature", hungarian: "aláírás nélkül nem hajtott végre egy műveletet"),
        .init(
            name: "tunnel_token_set", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— the host's Cloudflare tunnel connector token was set or replaced",
            hungarian: "— a gép Cloudflare-alagút csatlakozási tokenje be lett állítva vagy le lett cserélve"),
        .init(
            name: "tunnel_token_removed", postedBy: [.hub], severity: .warning, customerMailable: false,
            english: "— the host's Cloudflare tunnel connector token was removed from the hub",
            hungarian: "— a gép Cloudflare-alagút csatlakozási tokenje törölve lett a hubról"),
        .init(
            name: "secrets_rotated", postedBy: [.hub], severity: .info, customerMailable: false,
            english: "— a guest's secret bundle has a new version", hungarian: "— egy vendéggép titokcsomagjának új változata van"),
        .init(
            name: "op_held", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "holds a signed operation: its key is not in the box's signers_file yet",
            hungarian: "visszatart egy aláírt műveletet: a kulcsa még nincs a gép signers_file fájljában"),
        .init(
            name: "guest_provisioned", postedBy: [.host], severity: .info, customerMailable: false,
            english: "created a new guest", hungarian: "új vendéggépet hozott létre"),
        .init(
            name: "memory_limit_exceeded", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— a guest hit its memory cap and the kernel killed a process in it (OOM kill)",
            hungarian: "— egy vendéggép elérte a memóriakorlátját, és a rendszer leállított benne egy folyamatot"),
        .init(
            name: "update_committed", postedBy: [.host], severity: .info, customerMailable: false,
            english: "completed an update", hungarian: "frissítése elkészült"),
        .init(
            name: "update_reverted", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "REVERTED an update", hungarian: "visszavont egy frissítést"),
        .init(
            name: "update_refused", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "REFUSED an update (bad signature or checksum, a downgrade, no space, or no such release)",
            hungarian: "elutasított egy frissítést"),
        .init(
            name: "tunnel_down", postedBy: [.host], severity: .warning, customerMailable: true,
            english: "— the Cloudflare tunnel is DOWN: the apps are not reachable from outside",
            hungarian: "— a Cloudflare-alagút LEÁLLT: az alkalmazások kívülről nem érhetők el"),
        .init(
            name: "tunnel_recovered", postedBy: [.host], severity: .info, customerMailable: true,
            english: "— the Cloudflare tunnel is back", hungarian: "— a Cloudflare-alagút újra működik"),
        .init(
            name: "disk_failing", postedBy: [.host], severity: .critical, customerMailable: true,
            english: "— a disk is FAILING (SMART): replace it before it fails", hungarian: "— egy lemez HIBÁSODIK (SMART): cserélje ki"),
        .init(
            name: "overheating", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "is OVERHEATING", hungarian: "TÚLMELEGEDIK"),
        .init(
            name: "disk_attached", postedBy: [.host], severity: .info, customerMailable: false,
            english: "— a disk was attached", hungarian: "— lemez csatlakoztatva"),
        .init(
            name: "disk_disconnected", postedBy: [.host], severity: .warning, customerMailable: true,
            english: "— a disk was DISCONNECTED", hungarian: "— egy lemez lecsatlakozott"),
        .init(
            name: "smart_warning", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "— a disk reports SMART warnings", hungarian: "— egy lemez SMART-figyelmeztetést jelez"),
        .init(
            name: "smart_failed", postedBy: [.host], severity: .critical, customerMailable: true,
            english: "— a disk is FAILING (SMART)", hungarian: "— egy lemez meghibásodóban van"),
        .init(
            name: "temperature_high", postedBy: [.host], severity: .warning, customerMailable: false,
            english: "is running hot", hungarian: "túlmelegedett"),
        // Posted by guest keys (the controller).
        .init(
            name: "db_dump_completed", postedBy: [.guest], severity: .info, customerMailable: false,
            english: "completed a database dump", hungarian: "adatbázis-mentése elkészült"),
        .init(
            name: "db_dump_failed", postedBy: [.guest], severity: .warning, customerMailable: true,
            english: "reported a failed database dump", hungarian: "adatbázis-mentése nem sikerült"),
        .init(
            name: "stack_restart_failed", postedBy: [.guest], severity: .warning, customerMailable: true,
            english: "— an app will not start again (the controller's watchdog keeps failing)",
            hungarian: "— egy alkalmazás nem indul újra (a vezérlő felügyelője nem tudja elindítani)"),
        .init(
            name: "storage_disconnected", postedBy: [.host, .guest], severity: .warning, customerMailable: true,
            english: "— a storage disk was DISCONNECTED; the apps using it were stopped",
            hungarian: "— egy tárolólemez lecsatlakozott; az azt használó alkalmazások leálltak"),
        .init(
            name: "storage_reconnected", postedBy: [.host, .guest], severity: .info, customerMailable: true,
            english: "— a storage disk is back; its apps were started again",
            hungarian: "— egy tárolólemez újra elérhető; az alkalmazásai újraindultak"),
        .init(
            name: "secrets_rollout_failed", postedBy: [.guest], severity: .warning, customerMailable: false,
            english: "— a secrets rotation stopped: an app did not come back healthy",
            hungarian: "— egy titokcsere megállt: egy alkalmazás nem indult újra egészségesen"),
    ]

    public static let byName: [String: EventType] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    static func types(postedBy source: HubEvent.Source) -> [String: HubEvent.Severity] {
        Dictionary(uniqueKeysWithValues: all.filter { $0.postedBy.contains(source) }.map { ($0.name, $0.severity) })
    }
}
