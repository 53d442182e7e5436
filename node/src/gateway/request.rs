//! What a gateway request asks for, read from its path, query and headers (IPFS Trustless Gateway
//! spec): a CID, a UnixFS path below it (CAR only), the response type, the DAG scope. Anything
//! this gateway does not serve is refused here, before the store is touched.

use cid::Cid;
use http::{HeaderMap, StatusCode, header};
use percent_encoding::percent_decode_str;
use sha2::Digest;

use crate::dag_export::DagScope;

pub const RAW_TYPE: &str = "application/vnd.ipld.raw";
pub const CAR_TYPE: &str = "application/vnd.ipld.car";

/// The verifiable response types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One block, its bytes as they are.
    Raw,
    /// A CAR v1 stream, depth first, no duplicate blocks.
    Car,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRequest {
    pub root: Cid,
    /// Directory entry names below `root`, decoded.
    pub path: Vec<String>,
    pub format: Format,
    pub scope: DagScope,
    /// `Cache-Control: only-if-cached`: answer 412 rather than fetch.
    pub only_if_cached: bool,
}

/// A request refused before any work: its status and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

impl GatewayRequest {
    /// `rest` is the request path after `/ipfs/`, still percent-encoded.
    pub fn parse(rest: &str, query: Option<&str>, headers: &HeaderMap) -> Result<Self, Refusal> {
        let mut segments = rest.split('/').filter(|s| !s.is_empty());
        let cid_text = segments
            .next()
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "no CID after /ipfs/"))?;
        let root = Cid::try_from(cid_text).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("{cid_text:?} is not a CID: {e}"),
            )
        })?;
        let path = segments
            .map(decode_segment)
            .collect::<Result<Vec<_>, _>>()?;
        let params = QueryParams::parse(query.unwrap_or(""))?;
        let format = negotiate(headers, params.format)?;
        if format == Format::Raw && !path.is_empty() {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "a raw block is requested by CID alone; ask for a CAR to follow a path",
            ));
        }
        let only_if_cached = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|directive| directive.trim().eq_ignore_ascii_case("only-if-cached"));
        Ok(Self {
            root,
            path,
            format,
            scope: params.scope,
            only_if_cached,
        })
    }

    /// The entity tag: the same request for the same CID always gets the same bytes.
    pub fn etag(&self) -> String {
        match self.format {
            Format::Raw => format!("\"{}.raw\"", self.root),
            Format::Car if self.path.is_empty() => {
                format!("\"{}.car.{}.dfs.n\"", self.root, self.scope.name())
            }
            Format::Car => {
                // Names are arbitrary bytes: a digest keeps the tag a valid header value.
                let digest = sha2::Sha256::digest(self.path.join("/").as_bytes());
                format!(
                    "\"{}.car.{}.dfs.n.{}\"",
                    self.root,
                    self.scope.name(),
                    hex::encode(&digest[..8])
                )
            }
        }
    }
}

fn decode_segment(segment: &str) -> Result<String, Refusal> {
    let name = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "a path segment is not UTF-8"))?;
    if name == "." || name == ".." || name.contains('/') {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is not a directory entry name"),
        ));
    }
    Ok(name.into_owned())
}

#[derive(Default)]
struct QueryParams {
    format: Option<Format>,
    scope: DagScope,
}

impl QueryParams {
    fn parse(query: &str) -> Result<Self, Refusal> {
        let mut params = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(value).decode_utf8_lossy();
            match key {
                "format" => {
                    params.format = Some(match value.as_ref() {
                        "raw" => Format::Raw,
                        "car" => Format::Car,
                        other => {
                            return Err(Refusal::new(
                                StatusCode::BAD_REQUEST,
                                format!(
                                    "format={other:?} is not served here: a trustless gateway \
                                     serves format=raw and format=car"
                                ),
                            ));
                        }
                    })
                }
                "dag-scope" => {
                    params.scope = DagScope::parse(&value).ok_or_else(|| {
                        Refusal::new(
                            StatusCode::BAD_REQUEST,
                            format!("dag-scope={value:?}: use all, entity or block"),
                        )
                    })?
                }
                "entity-bytes" => {
                    return Err(Refusal::new(
                        StatusCode::NOT_IMPLEMENTED,
                        "entity-bytes is not supported; request the whole entity",
                    ));
                }
                // Other parameters (filename, download, car-version…) change nothing here.
                _ => {}
            }
        }
        Ok(params)
    }
}

/// The response type: a specific `Accept` value wins over `?format=` (wildcards are not
/// specific); neither asking for a verifiable type is 406.
fn negotiate(headers: &HeaderMap, format: Option<Format>) -> Result<Format, Refusal> {
    let mut best: Option<(f32, Format)> = None;
    let mut unacceptable_car = false;
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for range in ranges {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut quality = 1.0f32;
        let mut car_ok = true;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let value = value.trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => quality = value.parse().unwrap_or(0.0),
                "version" => car_ok &= value == "1",
                "order" => car_ok &= matches!(value, "dfs" | "unk"),
                "dups" => car_ok &= matches!(value, "y" | "n"),
                _ => {}
            }
        }
        let offered = match media.as_str() {
            RAW_TYPE => Format::Raw,
            CAR_TYPE if car_ok => Format::Car,
            CAR_TYPE => {
                unacceptable_car = true;
                continue;
            }
            _ => continue,
        };
        if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, offered));
        }
    }
    match (best, format) {
        (Some((_, format)), _) => Ok(format),
        (None, _) if unacceptable_car => Err(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            "only CAR version=1, order=dfs or unk, is served",
        )),
        (None, Some(format)) => Ok(format),
        (None, None) => Err(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            "this is a trustless gateway: ask for application/vnd.ipld.raw or \
             application/vnd.ipld.car (Accept header, or ?format=raw / ?format=car)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const CID: &str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    fn parse(
        rest: &str,
        query: &str,
        pairs: &[(header::HeaderName, &'static str)],
    ) -> Result<GatewayRequest, Refusal> {
        GatewayRequest::parse(rest, Some(query), &headers(pairs))
    }

    #[test]
    fn format_comes_from_accept_or_the_query() {
        let raw = parse(CID, "", &[(header::ACCEPT, RAW_TYPE)]).expect("raw");
        assert_eq!(raw.format, Format::Raw);
        let car = parse(CID, "format=car", &[]).expect("car");
        assert_eq!((car.format, car.scope), (Format::Car, DagScope::All));
        // A specific Accept value wins over the query; a wildcard does not.
        let accept_wins = parse(CID, "format=car", &[(header::ACCEPT, RAW_TYPE)]).expect("raw");
        assert_eq!(accept_wins.format, Format::Raw);
        let wildcard = parse(CID, "format=car", &[(header::ACCEPT, "*/*")]).expect("car");
        assert_eq!(wildcard.format, Format::Car);
        // Quality values pick among several.
        let weighted = parse(
            CID,
            "",
            &[(
                header::ACCEPT,
                "application/vnd.ipld.raw;q=0.5, application/vnd.ipld.car;version=1;q=0.9",
            )],
        )
        .expect("car");
        assert_eq!(weighted.format, Format::Car);
    }

    #[test]
    fn requests_without_a_verifiable_type_are_not_acceptable() {
        let refused = |accept: &'static str| {
            parse(CID, "", &[(header::ACCEPT, accept)])
                .expect_err("refused")
                .status
        };
        assert_eq!(refused("text/html"), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(refused("*/*"), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(
            refused("application/vnd.ipld.car; version=2"),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            parse(CID, "", &[]).expect_err("no type").status,
            StatusCode::NOT_ACCEPTABLE
        );
    }

    #[test]
    fn bad_input_is_a_bad_request() {
        let status = |rest: &str, query: &str| {
            parse(rest, query, &[(header::ACCEPT, CAR_TYPE)])
                .expect_err("refused")
                .status
        };
        assert_eq!(status("not-a-cid", ""), StatusCode::BAD_REQUEST);
        assert_eq!(status("", ""), StatusCode::BAD_REQUEST);
        assert_eq!(status(CID, "dag-scope=most"), StatusCode::BAD_REQUEST);
        assert_eq!(status(CID, "format=tar"), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(&format!("{CID}/a/../b"), ""),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(CID, "entity-bytes=0:10"),
            StatusCode::NOT_IMPLEMENTED
        );
        // A raw block has no path.
        let raw_path = parse(&format!("{CID}/a"), "format=raw", &[]).expect_err("refused");
        assert_eq!(raw_path.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn paths_scopes_and_cache_probes_are_read() {
        let request = parse(
            &format!("{CID}/docs/caf%C3%A9%20menu/"),
            "format=car&dag-scope=entity",
            &[(header::CACHE_CONTROL, "no-transform, only-if-cached")],
        )
        .expect("parsed");
        assert_eq!(request.path, ["docs", "café menu"]);
        assert_eq!(request.scope, DagScope::Entity);
        assert!(request.only_if_cached);
        // Every response shape has its own tag.
        let block = parse(CID, "format=car&dag-scope=block", &[]).expect("block");
        let all = parse(CID, "format=car", &[]).expect("all");
        let raw = parse(CID, "format=raw", &[]).expect("raw");
        let tags = [request.etag(), block.etag(), all.etag(), raw.etag()];
        for (i, tag) in tags.iter().enumerate() {
            assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
            assert!(!tags[i + 1..].contains(tag), "{tag} repeats");
        }
    }
}
