//! Renders the Kubernetes manifests: with `kubectl kustomize` when kubectl
//! is on PATH (what is deployed is what is rehearsed), otherwise with a reader
//! of the few kustomize features the repository's overlays use: `resources` (files and
//! directories), `namespace`, `images`, `patches` / `patchesJson6902` /
//! `patchesStrategicMerge` (JSON patch add/replace/remove, strategic merge by
//! map and by list-item `name`), `configMapGenerator` with `files`. Anything
//! else in a kustomization is ignored; it does not change what the rehearsal
//! reads (the Rollout, its AnalysisTemplates, the pinger Deployment and the
//! Prometheus configuration). The reader does not apply `labels` or the
//! generators' name hashes; a test checks that the rehearsal plays the same
//! thing from either rendering, for every overlay.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub type Error = String;

/// Every object a kustomization renders, namespaced.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    pub namespace: Option<String>,
    pub objects: Vec<Value>,
}

impl Rendered {
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |object| object["kind"] == kind)
    }

    pub fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
    }
}

/// YAML documents of `text` as JSON values (empty documents skipped).
pub fn yaml_documents(text: &str, origin: &Path) -> Result<Vec<Value>, Error> {
    rollout_model::yaml_documents(text)
        .map_err(|error| format!("{}: not valid YAML: {error}", origin.display()))
}

pub fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// Renders the kustomization in `dir` (or the plain YAML file `dir`), with
/// `kubectl kustomize` when kubectl is on PATH.
pub fn render(path: &Path) -> Result<Rendered, Error> {
    match which::which("kubectl") {
        Ok(kubectl) if path.is_dir() && kustomization_file(path).is_some() => {
            render_with_kubectl(&kubectl, path)
        }
        _ => read(path),
    }
}

fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|name| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `kubectl kustomize dir`.
pub fn render_with_kubectl(kubectl: &Path, dir: &Path) -> Result<Rendered, Error> {
    let output = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", kubectl.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // kubectl logs `... "command failed" err="<the error>"`: keep the error.
        let error = stderr
            .split_once(" err=\"")
            .map_or(stderr.trim(), |(_, error)| {
                error.trim().trim_end_matches('"')
            });
        return Err(format!("kubectl kustomize {}: {error}", dir.display()));
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| format!("kubectl kustomize {}: output is not UTF-8", dir.display()))?;
    let objects = yaml_documents(&text, dir)?;
    let namespace = objects
        .iter()
        .find_map(|object| object["metadata"]["namespace"].as_str().map(str::to_owned));
    Ok(Rendered { namespace, objects })
}

/// Renders with the rehearsal's own reader (no kubectl).
pub fn read(path: &Path) -> Result<Rendered, Error> {
    if path.is_file() {
        return Ok(Rendered {
            namespace: None,
            objects: yaml_documents(&read_text(path)?, path)?,
        });
    }
    let file = kustomization_file(path).ok_or_else(|| {
        format!(
            "cannot read manifests at {}: no such file or kustomization directory",
            path.display()
        )
    })?;
    let kustomization = yaml_documents(&read_text(&file)?, &file)?
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    let mut objects = Vec::new();
    for resource in strings(&kustomization["resources"]) {
        if resource.contains("://") {
            return Err(format!(
                "{}: remote resource {resource} is not supported",
                file.display()
            ));
        }
        let rendered = read(&path.join(&resource))?;
        objects.extend(rendered.objects);
    }
    objects.extend(config_maps(path, &kustomization)?);
    for (target, body) in patches(path, &file, &kustomization)? {
        apply_patch(&mut objects, &target, &body)
            .map_err(|error| format!("{}: {error}", file.display()))?;
    }
    for image in list(&kustomization["images"]) {
        set_image(&mut objects, &image);
    }
    let namespace = kustomization["namespace"].as_str().map(str::to_owned);
    if let Some(namespace) = &namespace {
        for object in &mut objects {
            if object["kind"] != "Namespace" && object["metadata"].is_object() {
                object["metadata"]["namespace"] = Value::String(namespace.clone());
            }
        }
    }
    let namespace = namespace.or_else(|| {
        objects
            .iter()
            .find_map(|object| object["metadata"]["namespace"].as_str().map(str::to_owned))
    });
    Ok(Rendered { namespace, objects })
}

/// The ConfigMaps of a kustomization's `configMapGenerator`.
fn config_maps(path: &Path, kustomization: &Value) -> Result<Vec<Value>, Error> {
    let mut objects = Vec::new();
    for generator in list(&kustomization["configMapGenerator"]) {
        let mut data = Map::new();
        for entry in strings(&generator["files"]) {
            let (key, relative) = match entry.split_once('=') {
                Some((key, relative)) => (key.to_owned(), relative.to_owned()),
                None => (
                    Path::new(&entry)
                        .file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    entry.clone(),
                ),
            };
            data.insert(key, Value::String(read_text(&path.join(relative))?));
        }
        objects.push(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": generator["name"]},
            "data": data,
        }));
    }
    Ok(objects)
}

/// A kustomization's patches: (target, body); strategic merges have no target.
fn patches(path: &Path, file: &Path, kustomization: &Value) -> Result<Vec<(Value, Value)>, Error> {
    let mut patches: Vec<(Value, Value)> = Vec::new();
    for patch in list(&kustomization["patches"])
        .into_iter()
        .chain(list(&kustomization["patchesJson6902"]))
    {
        let body = if let Some(relative) = patch["path"].as_str() {
            let patch_path = path.join(relative);
            yaml_documents(&read_text(&patch_path)?, &patch_path)?
                .into_iter()
                .next()
                .unwrap_or(Value::Null)
        } else if let Some(inline) = patch["patch"].as_str() {
            yaml_documents(inline, file)?
                .into_iter()
                .next()
                .unwrap_or(Value::Null)
        } else {
            return Err(format!("{}: a patch without path or patch", file.display()));
        };
        patches.push((patch["target"].clone(), body));
    }
    for relative in strings(&kustomization["patchesStrategicMerge"]) {
        let patch_path = path.join(relative);
        for body in yaml_documents(&read_text(&patch_path)?, &patch_path)? {
            patches.push((Value::Null, body));
        }
    }
    Ok(patches)
}

fn list(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    list(value)
        .iter()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect()
}

fn matches_target(object: &Value, target: &Value) -> bool {
    ["kind", "name", "namespace"].iter().all(|key| {
        let wanted = &target[*key];
        if wanted.is_null() {
            return true;
        }
        let actual = if *key == "kind" {
            &object["kind"]
        } else {
            &object["metadata"][*key]
        };
        actual == wanted
    }) && (target["group"].is_null()
        || object["apiVersion"]
            .as_str()
            .is_some_and(|api| api.split('/').next() == target["group"].as_str()))
}

fn apply_patch(objects: &mut [Value], target: &Value, body: &Value) -> Result<(), Error> {
    if let Some(operations) = body.as_array() {
        if target.is_null() {
            return Err("a JSON patch needs a target".to_owned());
        }
        let mut applied = false;
        for object in objects
            .iter_mut()
            .filter(|object| matches_target(object, target))
        {
            for operation in operations {
                json_patch(object, operation)?;
            }
            applied = true;
        }
        if !applied {
            return Err(format!("patch target {target} matches no object"));
        }
        return Ok(());
    }
    let target = if target.is_null() {
        serde_json::json!({"kind": body["kind"], "name": body["metadata"]["name"]})
    } else {
        target.clone()
    };
    let mut applied = false;
    for object in objects
        .iter_mut()
        .filter(|object| matches_target(object, &target))
    {
        merge(object, body);
        applied = true;
    }
    if !applied {
        return Err(format!("patch target {target} matches no object"));
    }
    Ok(())
}

fn pointer_tokens(path: &str) -> Result<Vec<String>, Error> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("JSON patch path {path:?} must start with /"))?;
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn json_patch(object: &mut Value, operation: &Value) -> Result<(), Error> {
    let op = operation["op"].as_str().unwrap_or_default();
    let path = operation["path"].as_str().unwrap_or_default();
    let tokens = pointer_tokens(path)?;
    let (last, parents) = tokens
        .split_last()
        .ok_or_else(|| format!("empty JSON patch path in {operation}"))?;
    let parent = pointer_parent(object, path, parents)?;
    let value = &operation["value"];
    match (op, parent) {
        ("add" | "replace", Value::Object(map)) => {
            if op == "replace" && !map.contains_key(last) {
                return Err(format!("JSON patch replace {path}: nothing to replace"));
            }
            map.insert(last.clone(), value.clone());
        }
        ("add", Value::Array(items)) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("JSON patch path {path}: bad index"))?
            };
            if index > items.len() {
                return Err(format!("JSON patch path {path}: index out of range"));
            }
            items.insert(index, value.clone());
        }
        ("replace", Value::Array(items)) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get_mut(index))
                .ok_or_else(|| format!("JSON patch path {path}: bad index"))?;
            *slot = value.clone();
        }
        ("remove", Value::Object(map)) => {
            map.remove(last)
                .ok_or_else(|| format!("JSON patch remove {path}: nothing to remove"))?;
        }
        ("remove", Value::Array(items)) => {
            let index = last
                .parse::<usize>()
                .ok()
                .filter(|index| *index < items.len())
                .ok_or_else(|| format!("JSON patch path {path}: bad index"))?;
            items.remove(index);
        }
        (op, _) => {
            return Err(format!(
                "JSON patch operation {op:?} on {path} is not supported"
            ));
        }
    }
    Ok(())
}

/// The container that the path's last token is in.
fn pointer_parent<'a>(
    object: &'a mut Value,
    path: &str,
    parents: &[String],
) -> Result<&'a mut Value, Error> {
    let mut parent = object;
    for token in parents {
        parent = match parent {
            Value::Object(map) => map
                .get_mut(token)
                .ok_or_else(|| format!("JSON patch path {path}: no {token}"))?,
            Value::Array(items) => token
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get_mut(index))
                .ok_or_else(|| format!("JSON patch path {path}: no index {token}"))?,
            _ => {
                return Err(format!(
                    "JSON patch path {path}: {token} is not a container"
                ));
            }
        };
    }
    Ok(parent)
}

/// Strategic merge, simplified: maps merge key by key, `null` deletes, lists
/// of maps with a `name` merge item by item, other lists are replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Array(base), Value::Array(patch))
            if patch.iter().all(|item| item["name"].is_string()) && !patch.is_empty() =>
        {
            for item in patch {
                match base
                    .iter_mut()
                    .find(|existing| existing["name"] == item["name"])
                {
                    Some(existing) => merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

fn set_image(objects: &mut [Value], image: &Value) {
    let Some(name) = image["name"].as_str() else {
        return;
    };
    for object in objects.iter_mut() {
        for containers in ["containers", "initContainers"] {
            let Some(list) = object["spec"]["template"]["spec"][containers].as_array_mut() else {
                continue;
            };
            for container in list {
                let Some(current) = container["image"].as_str() else {
                    continue;
                };
                let (current_name, current_tag) = split_image(current);
                if current_name != name {
                    continue;
                }
                let new_name = image["newName"].as_str().unwrap_or(current_name);
                let new_tag = image["newTag"].as_str().or(current_tag);
                container["image"] = Value::String(match new_tag {
                    Some(tag) => format!("{new_name}:{tag}"),
                    None => new_name.to_owned(),
                });
            }
        }
    }
}

/// `registry/name:tag` -> (`registry/name`, `tag`).
pub fn split_image(image: &str) -> (&str, Option<&str>) {
    let last_slash = image.rfind('/').map_or(0, |index| index + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => (
            &image[..last_slash + colon],
            Some(&image[last_slash + colon + 1..]),
        ),
        None => (image, None),
    }
}

/// The workspace root this binary was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patch_and_merge() {
        let mut object = serde_json::json!({"spec": {"a": 1, "list": [1, 2]}, "metadata": {"labels": {"x/y": "1"}}});
        json_patch(
            &mut object,
            &serde_json::json!({"op": "add", "path": "/spec/b", "value": {"c": 2}}),
        )
        .unwrap();
        json_patch(
            &mut object,
            &serde_json::json!({"op": "replace", "path": "/metadata/labels/x~1y", "value": "2"}),
        )
        .unwrap();
        json_patch(
            &mut object,
            &serde_json::json!({"op": "add", "path": "/spec/list/-", "value": 3}),
        )
        .unwrap();
        json_patch(
            &mut object,
            &serde_json::json!({"op": "remove", "path": "/spec/a"}),
        )
        .unwrap();
        assert_eq!(
            object,
            serde_json::json!({"spec": {"b": {"c": 2}, "list": [1, 2, 3]}, "metadata": {"labels": {"x/y": "2"}}})
        );
        merge(&mut object, &serde_json::json!({"spec": {"b": {"d": 3}}}));
        assert_eq!(object["spec"]["b"], serde_json::json!({"c": 2, "d": 3}));
    }

    #[test]
    fn images() {
        assert_eq!(split_image("ponger:initial"), ("ponger", Some("initial")));
        assert_eq!(
            split_image("localhost:5000/ponger"),
            ("localhost:5000/ponger", None)
        );
        assert_eq!(
            split_image("r.io/me/ponger:best"),
            ("r.io/me/ponger", Some("best"))
        );
    }
}
