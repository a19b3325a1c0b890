//! Every reference-file rule of SPEC §2, each with a real bad input made here (images
//! with the `image` crate, videos with the real ffmpeg CLI, URLs served by a small HTTP
//! server on loopback), asserting the exact `type`, `loc` and `ctx`.

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use r2v_api::{ErrorDetail, ValidateOptions};
use r2v_media::fetch::{FetchPolicy, Fetcher};
use r2v_media::ffmpeg::Tools;
use r2v_media::reference::{LoadError, LoadedMedia, ReferenceLoader};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    encode(
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 90]))),
        ImageFormat::Png,
    )
}

/// Makes a video with ffmpeg's synthetic source.
fn video(dir: &Path, name: &str, seconds: f64, fps: u32, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc2=s=96x64:rate={fps}"))
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .args(extra)
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed");
    assert!(status.success());
    path
}

fn loader(policy: FetchPolicy) -> ReferenceLoader {
    ReferenceLoader::new(Fetcher::new(policy).unwrap(), Tools::default())
}

async fn load(body: Value, policy: FetchPolicy) -> Result<Vec<LoadedMedia>, Vec<ErrorDetail>> {
    let input = r2v_api::validate(
        &body,
        &ValidateOptions {
            allow_local_paths: true,
        },
    )
    .expect("fields are valid");
    match loader(policy).load_all(&input).await {
        Ok(media) => Ok(media),
        Err(LoadError::Invalid(details)) => Err(details),
        Err(LoadError::Internal(e)) => panic!("internal error: {e}"),
    }
}

/// Loads one image and returns its single problem as `(loc, type, ctx)`.
async fn image_problem(bytes: &[u8]) -> (Value, String, Option<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ref.png");
    std::fs::write(&path, bytes).unwrap();
    let body = json!({"prompt": "x", "image_urls": [path]});
    let details = load(body, FetchPolicy::default())
        .await
        .expect_err("the image should be refused");
    assert_eq!(details.len(), 1, "{details:?}");
    let d = &details[0];
    (json!(d.loc), d.kind.clone(), d.ctx.clone())
}

#[tokio::test]
async fn truncated_png_is_an_image_load_error() {
    let full = png(300, 300);
    let (loc, kind, _) = image_problem(&full[..full.len() / 2]).await;
    assert_eq!(
        (loc, kind.as_str()),
        (json!(["body", "image_urls", 0]), "image_load_error")
    );
}

#[tokio::test]
async fn alpha_is_refused_only_when_some_pixel_is_not_opaque() {
    let mut rgba = RgbaImage::from_pixel(300, 300, Rgba([200, 10, 10, 255]));
    let opaque = encode(DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("opaque.png"), &opaque).unwrap();
    let ok = load(
        json!({"prompt": "x", "image_urls": [dir.path().join("opaque.png")]}),
        FetchPolicy::default(),
    )
    .await;
    assert!(
        matches!(ok.as_deref(), Ok([LoadedMedia::Image(_)])),
        "an all-opaque RGBA PNG must pass"
    );

    for y in 0..10 {
        rgba.put_pixel(5, y, Rgba([0, 0, 0, 0]));
    }
    let (_, kind, ctx) = image_problem(&encode(
        DynamicImage::ImageRgba8(rgba.clone()),
        ImageFormat::Png,
    ))
    .await;
    assert_eq!(kind, "unsupported_image_format");
    assert_eq!(
        ctx,
        Some(json!({"reason": "alpha", "transparent_pixels": 10}))
    );
    let (_, kind, ctx) =
        image_problem(&encode(DynamicImage::ImageRgba8(rgba), ImageFormat::WebP)).await;
    assert_eq!(
        (kind.as_str(), ctx.unwrap()["reason"].clone()),
        ("unsupported_image_format", json!("alpha"))
    );
}

#[tokio::test]
async fn image_sides_are_limited() {
    let (_, kind, ctx) = image_problem(&png(200, 200)).await;
    assert_eq!(kind, "image_too_small");
    assert_eq!(
        ctx,
        Some(json!({"min_width": 240, "min_height": 240, "width": 200, "height": 200}))
    );
    let (_, kind, ctx) = image_problem(&png(6000, 300)).await;
    assert_eq!(kind, "image_too_large");
    assert_eq!(
        ctx,
        Some(json!({"max_width": 5000, "max_height": 5000, "width": 6000, "height": 300}))
    );
}

#[tokio::test]
async fn an_11_mb_image_is_too_large() {
    // Noise does not compress, so this PNG is a real image of about 11.5 MB.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noisy = RgbImage::from_fn(2000, 1920, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let bytes = encode(DynamicImage::ImageRgb8(noisy), ImageFormat::Png);
    assert!(bytes.len() > 11_000_000, "{}", bytes.len());
    let (_, kind, ctx) = image_problem(&bytes).await;
    assert_eq!(
        (kind.as_str(), ctx),
        (
            "file_too_large",
            Some(json!({"max_size": 10 * 1024 * 1024}))
        )
    );
}

#[tokio::test]
async fn image_formats_are_sniffed_from_the_bytes() {
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    let (_, kind, ctx) = image_problem(gif).await;
    assert_eq!(kind, "unsupported_image_format");
    assert_eq!(ctx.unwrap()["found"], "gif");
    // A JPEG saved with a .png name is fine: the bytes decide.
    let jpeg = encode(
        DynamicImage::ImageRgb8(RgbImage::new(320, 240)),
        ImageFormat::Jpeg,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("really-a-jpeg.png"), jpeg).unwrap();
    assert!(
        load(
            json!({"prompt": "x", "image_urls": [dir.path().join("really-a-jpeg.png")]}),
            FetchPolicy::default()
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn video_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = video(d, "good.mp4", 2.0, 24, &[]);
    let slow = video(d, "slow.mp4", 2.0, 10, &[]);
    let short = video(d, "short.mp4", 0.5, 24, &[]);
    let long = video(
        d,
        "long.mp4",
        31.0,
        16,
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let webm = video(
        d,
        "clip.webm",
        1.5,
        24,
        &["-c:v", "libvpx-vp9", "-deadline", "realtime"],
    );
    let text = d.join("notes.mp4");
    std::fs::write(&text, "this is a text file, not a video\n".repeat(20)).unwrap();
    let mov = video(d, "good.mov", 1.5, 30, &[]);

    let body = json!({"prompt": "x", "video_urls": [good, slow, short], "image_urls": []});
    let details = load(body, FetchPolicy::default()).await.unwrap_err();
    let got: Vec<Value> = details
        .iter()
        .map(|d| json!([d.loc, d.kind, d.ctx]))
        .collect();
    assert_eq!(
        got,
        vec![
            json!([["body", "video_urls", 1], "video_fps_too_low", {"min_fps": 16, "fps": 10.0}]),
            json!([["body", "video_urls", 2], "video_duration_too_short", {"min_duration": 1, "duration": 0.5}]),
        ]
    );

    let body = json!({"prompt": "x", "video_urls": [long, webm, text]});
    let details = load(body, FetchPolicy::default()).await.unwrap_err();
    let kinds: Vec<(Value, &str)> = details
        .iter()
        .map(|d| (json!(d.loc), d.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (json!(["body", "video_urls", 0]), "video_duration_too_long"),
            (json!(["body", "video_urls", 1]), "unsupported_video_format"),
            (json!(["body", "video_urls", 2]), "unsupported_video_format"),
        ]
    );
    assert_eq!(details[0].ctx.as_ref().unwrap()["max_duration"], 30);
    assert!(details[1].msg.contains("matroska"), "{}", details[1].msg);

    let ok = load(
        json!({"prompt": "x", "video_urls": [mov]}),
        FetchPolicy::default(),
    )
    .await
    .unwrap();
    assert!(matches!(&ok[0], LoadedMedia::Video(v) if v.probe.video.width == 96));
}

/// A tiny HTTP/1.1 server on `ip`: `/image.png` serves a PNG, `/redirect` sends a
/// redirect to `target`, anything else is a 404.
fn serve(ip: &str, target: String) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("binding a loopback address");
    let port = listener.local_addr().unwrap().port();
    let image = png(320, 320);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_owned();
            let mut stream = stream;
            let _ = match path.as_str() {
                "/image.png" => stream
                    .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", image.len()).as_bytes())
                    .and_then(|()| stream.write_all(&image)),
                "/redirect" => stream.write_all(format!("HTTP/1.1 302 Found\r\nlocation: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes()),
                _ => stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
            };
        }
    });
    port
}

#[tokio::test]
async fn urls_and_data_uris() {
    let inner = serve("127.0.0.1", String::new());
    let outer = serve("127.0.0.2", format!("http://127.0.0.1:{inner}/image.png"));
    let closed = TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // dropped: nothing listens
    // The operator allows 127.0.0.2 alone; 127.0.0.1 stays behind the guard.
    let policy = FetchPolicy {
        allowed_addresses: vec!["127.0.0.2".parse::<IpAddr>().unwrap()],
        ..FetchPolicy::default()
    };

    use base64::Engine;
    let data_uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png(300, 260))
    );
    let body = json!({"prompt": "x", "image_urls": [
        format!("http://127.0.0.2:{outer}/image.png"),
        format!("http://127.0.0.2:{closed}/image.png"),
        format!("http://127.0.0.1:{inner}/image.png"),
        format!("http://127.0.0.2:{outer}/redirect"),
        "data:image/png;base64,not*base64!",
    ]});
    let details = load(body, policy.clone()).await.unwrap_err();
    let got: Vec<(Value, &str)> = details
        .iter()
        .map(|d| (json!(d.loc), d.kind.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!(["body", "image_urls", 1]), "file_download_error"),
            (json!(["body", "image_urls", 2]), "file_download_error"),
            (json!(["body", "image_urls", 3]), "file_download_error"),
            (json!(["body", "image_urls", 4]), "file_download_error"),
        ]
    );
    assert!(
        details[0].msg.contains("onnect"),
        "unreachable: {}",
        details[0].msg
    );
    assert!(
        details[1]
            .msg
            .contains("127.0.0.1 is private, loopback or link-local"),
        "{}",
        details[1].msg
    );
    assert!(
        details[2].msg.contains("redirected to http://127.0.0.1"),
        "{}",
        details[2].msg
    );
    assert!(
        details[3].msg.contains("base64 data is invalid"),
        "{}",
        details[3].msg
    );

    let ok = load(json!({"prompt": "x", "image_urls": [format!("http://127.0.0.2:{outer}/image.png"), data_uri]}), policy).await.unwrap();
    assert_eq!(ok.len(), 2);
    // With no allowance at all, a name that resolves to loopback is refused too.
    let by_name = load(
        json!({"prompt": "x", "image_urls": [format!("http://localhost:{inner}/image.png")]}),
        FetchPolicy::default(),
    )
    .await
    .unwrap_err();
    assert!(
        by_name[0].msg.contains("resolves only to private"),
        "{}",
        by_name[0].msg
    );
}
