// Cast SMS: one MongoDB user per service, each with privileges on its own collections only
// (docs/deploy.md, "Threat model"). The official mongo image runs this once, on a fresh
// data volume, with authentication on (deploy/compose.production.yaml sets the root user).
// The gateway has no database user at all.
const dbName = process.env.MONGO_DATABASE || "cast-ghl";
const app = db.getSiblingDB(dbName);
const owner = ["find", "insert", "update", "remove", "createIndex", "listIndexes",
               "createCollection"];

function owns(collections) {
  return collections.map((collection) => ({ resource: { db: dbName, collection },
                                            actions: owner }));
}

app.createRole({
  role: "castghl_sender",
  privileges: owns(["messages", "inbound", "contacts", "suppressions", "ghl_rate",
                    "cast_accounts", "usage"]),
  roles: [],
});
// The sender's data (usage, messages, accounts) reaches the oauth service's console and
// admin API through the sender's operator API, never through these collections.
app.createRole({
  role: "castghl_oauth",
  privileges: owns(["installations", "app_events", "admin_audit"]),
  roles: [],
});
app.createUser({ user: "sender", pwd: process.env.MONGO_SENDER_PASSWORD,
                 roles: ["castghl_sender"] });
app.createUser({ user: "oauth", pwd: process.env.MONGO_OAUTH_PASSWORD,
                 roles: ["castghl_oauth"] });
