//! Projects and services.

use wharf_wire::{BuildNetwork, DeploySettings, Service, format_millis};

use crate::{Result, Store, StoreError, in_transaction, is_unique_violation, on_pool};

/// A service to create; the caller has validated every field.
#[derive(Debug, Clone)]
pub struct NewService {
    pub name: String,
    pub project: String,
    pub repo: String,
    /// Lowercase `owner/name` for repositories of the GitHub App; `None` for URL sources.
    pub repo_key: Option<String>,
    pub branch: String,
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    pub compose: Option<String>,
    pub port: Option<u16>,
    pub health_path: Option<String>,
    pub domain: Option<String>,
    pub cancel_running: bool,
    pub build_network: BuildNetwork,
    pub deploy: DeploySettings,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ServiceRow {
    id: i64,
    name: String,
    project: String,
    repo: String,
    branch: String,
    dockerfile: Option<String>,
    context: Option<String>,
    compose: Option<String>,
    port: Option<i64>,
    health_path: Option<String>,
    domain: Option<String>,
    cancel_running: bool,
    build_network: String,
    deploy: Option<String>,
    github_repository_id: Option<i64>,
    created_at: i64,
}

impl From<ServiceRow> for Service {
    fn from(row: ServiceRow) -> Service {
        Service {
            id: row.id,
            name: row.name,
            project: row.project,
            repo: row.repo,
            branch: row.branch,
            dockerfile: row.dockerfile,
            context: row.context,
            compose: row.compose,
            port: row.port.and_then(|port| u16::try_from(port).ok()),
            health_path: row.health_path,
            domain: row.domain,
            cancel_running: row.cancel_running,
            // A name from a newer Wharf reads as the default, the safer of the two.
            build_network: BuildNetwork::parse(&row.build_network).unwrap_or_default(),
            // Written by this code from a `DeploySettings`; unknown fields of a newer version
            // are ignored, missing ones take their defaults.
            deploy: row
                .deploy
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
            repository_id: row.github_repository_id,
            created_at: format_millis(row.created_at),
        }
    }
}

/// The columns of [`ServiceRow`]; a macro so that `concat!` can build whole statements from it.
macro_rules! select_service {
    () => {
        "SELECT s.id, s.name, p.name AS project, s.repo, s.branch, s.dockerfile, s.context, \
         s.compose, s.port, s.health_path, s.domain, s.cancel_running, s.build_network, s.deploy, \
         s.github_repository_id, s.created_at \
         FROM services s JOIN projects p ON p.id = s.project_id"
    };
}

/// Binds a service's settings: repo, repo_key, branch, dockerfile, context, compose, port,
/// health_path, domain, cancel_running, deploy, environment, build_network, in that order. Creating and changing a service
/// name these columns in the same order.
macro_rules! bind_settings {
    ($query:expr, $new:expr) => {
        $query
            .bind(&$new.repo)
            .bind(&$new.repo_key)
            .bind(&$new.branch)
            .bind(&$new.dockerfile)
            .bind(&$new.context)
            .bind(&$new.compose)
            .bind($new.port.map(i64::from))
            .bind(&$new.health_path)
            .bind(&$new.domain)
            .bind($new.cancel_running)
            .bind(serde_json::to_string(&$new.deploy).expect("settings serialize"))
            .bind(&$new.deploy.environment)
            .bind($new.build_network.as_str())
    };
}

impl Store {
    /// Creates a service, and its project when that does not exist yet.
    pub async fn create_service(&self, new: &NewService, now: i64) -> Result<Service> {
        let id: i64 = in_transaction!(self, tx => {
            sqlx::query("INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(&new.project)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let query = sqlx::query_as::<_, (i64,)>(
                "INSERT INTO services (project_id, name, created_at, repo, repo_key, branch, \
                 dockerfile, context, compose, port, health_path, domain, cancel_running, deploy, \
                 environment, build_network, github_repository_id) \
                 SELECT id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 (SELECT MAX(r.id) FROM repositories r WHERE r.repo_key = $5) \
                 FROM projects WHERE name = $1 \
                 RETURNING id",
            )
            .bind(&new.project)
            .bind(&new.name)
            .bind(now);
            let inserted = bind_settings!(query, new).fetch_one(&mut *tx).await;
            match inserted {
                Ok((id,)) => id,
                Err(error) if is_unique_violation(&error) => {
                    return Err(StoreError::Conflict(format!(
                        "a service named {} already exists",
                        new.name
                    )));
                }
                Err(error) => return Err(error.into()),
            }
        });
        self.service_by_id(id).await
    }

    /// Replaces the settings of service `id` with `new`'s; its name and project stay. The
    /// service keeps the repository it is linked to while its repository's name stays; a new
    /// name, or `relink`, links it again as creating it does (to the repository an installation
    /// names now, or else to the first of its name that pushes).
    pub async fn update_service(&self, id: i64, new: &NewService, relink: bool) -> Result<Service> {
        let updated = on_pool!(self, pool => {
            let query = sqlx::query(
                "UPDATE services SET github_repository_id = CASE \
                 WHEN COALESCE(repo_key, '') = COALESCE($2, '') AND NOT $15 THEN github_repository_id \
                 ELSE (SELECT MAX(r.id) FROM repositories r WHERE r.repo_key = $2) END, \
                 repo = $1, repo_key = $2, branch = $3, dockerfile = $4, \
                 context = $5, compose = $6, port = $7, health_path = $8, domain = $9, \
                 cancel_running = $10, deploy = $11, environment = $12, build_network = $13 \
                 WHERE id = $14",
            );
            bind_settings!(query, new)
                .bind(id)
                .bind(relink)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound(format!("no service with id {id}")));
        }
        self.service_by_id(id).await
    }

    /// Every service, by name.
    pub async fn list_services(&self) -> Result<Vec<Service>> {
        let sql = concat!(select_service!(), " ORDER BY s.name");
        let rows: Vec<ServiceRow> = on_pool!(self, pool => {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(Service::from).collect())
    }

    /// The service named `name`.
    pub async fn service_by_name(&self, name: &str) -> Result<Service> {
        let sql = concat!(select_service!(), " WHERE s.name = $1");
        let row: Option<ServiceRow> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(name).fetch_optional(pool).await?
        });
        row.map(Service::from)
            .ok_or_else(|| StoreError::NotFound(format!("no service named {name}")))
    }

    /// The service with id `id`.
    pub async fn service_by_id(&self, id: i64) -> Result<Service> {
        let sql = concat!(select_service!(), " WHERE s.id = $1");
        let row: Option<ServiceRow> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(id).fetch_optional(pool).await?
        });
        row.map(Service::from)
            .ok_or_else(|| StoreError::NotFound(format!("no service with id {id}")))
    }
}

impl Store {
    /// Replaces a service's sealed CI deploy-hook secret.
    pub async fn set_deploy_secret(&self, service_id: i64, sealed: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE services SET deploy_secret = $1 WHERE id = $2")
                .bind(sealed)
                .bind(service_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A service's sealed CI deploy-hook secret, when it has one.
    pub async fn deploy_secret(&self, service_id: i64) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT deploy_secret FROM services WHERE id = $1")
                .bind(service_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(|(sealed,)| sealed))
    }
}
