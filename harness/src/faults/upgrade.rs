//! A node reinstalled, from another image as an upgrade installs a new release on a VM, or from
//! its own as a lost VM is replaced: the container is replaced by a new one with everything
//! but its filesystem as it was (name,
//! hostname, labels, networks and the alias other nodes reach it by, config mounts,
//! environment, capabilities, published ports). The engine cannot change a container's image,
//! so the old one is stopped, removed and created anew.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, NetworkConnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StopContainerOptions,
};

use super::FaultError;
use crate::docker::DockerError;
use crate::node::Node;

/// Replaces `n`'s container by one of `image` (an engine tag; `None`: its own image), stopping
/// the old one with SIGTERM and `timeout_s` to exit. Returns what it did, for the fault's notes.
pub(super) async fn reinstall(
    n: &Node,
    image: Option<&str>,
    timeout_s: i32,
) -> Result<String, FaultError> {
    let docker = &n.shared.docker;
    let container = n.container();
    let api = |what: &str| DockerError::api(format!("reinstall {}: {what}", n.name()));
    let old = docker
        .inspect_container(&container, None)
        .await
        .map_err(api("inspect"))?;
    let config = old.config.unwrap_or_default();
    let host_config = old.host_config.unwrap_or_default();
    let old_image = config.image.clone().unwrap_or_default();
    let image = image.unwrap_or(&old_image).to_string();
    // The old image's own environment (PATH and the like) is the new image's business.
    let image_env = docker
        .inspect_image(&old_image)
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.env)
        .unwrap_or_default();
    let env: Vec<String> = config
        .env
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !image_env.contains(e))
        .collect();
    let networks: Vec<String> = old
        .network_settings
        .and_then(|s| s.networks)
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
    let first = host_config
        .network_mode
        .clone()
        .filter(|m| networks.contains(m))
        .or_else(|| networks.first().cloned())
        .unwrap_or_default();
    let endpoint = || EndpointSettings {
        aliases: Some(vec![n.name().to_string()]),
        ..Default::default()
    };

    docker
        .stop_container(
            &container,
            Some(StopContainerOptions {
                t: Some(timeout_s),
                signal: None,
            }),
        )
        .await
        .map_err(api("stop"))?;
    docker
        .remove_container(
            &container,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(api("remove the old container"))?;
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: config.cmd,
        entrypoint: config.entrypoint,
        env: Some(env),
        hostname: config.hostname,
        user: config.user,
        labels: config.labels,
        exposed_ports: config.exposed_ports,
        working_dir: config.working_dir,
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(first.clone(), endpoint())])),
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(container.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(api("create the new container"))?;
    for net in networks.iter().filter(|net| **net != first) {
        docker
            .connect_network(
                net,
                NetworkConnectRequest {
                    container: container.clone(),
                    endpoint_config: Some(endpoint()),
                },
            )
            .await
            .map_err(api(&format!("connect to {net}")))?;
    }
    docker
        .start_container(&container, None)
        .await
        .map_err(api("start"))?;
    n.refresh().await?;
    Ok(match image == old_image {
        true => format!("{}: a fresh container of {image}", n.name()),
        false => format!("{}: {old_image} replaced by {image}", n.name()),
    })
}
