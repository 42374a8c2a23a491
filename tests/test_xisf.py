"""XISF in and out: every layout the reader takes, real files bit-exact, bad input refused."""

from __future__ import annotations

import base64
import hashlib
import zlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise.fits_io import read_fits, write_fits
from napari_astrodenoise.fits_write import WRITER_CHANGED_KEYWORDS
from napari_astrodenoise.xisf_io import (
    XisfProperty,
    XisfReadError,
    format_fits_value,
    parse_fits_value,
    read_xisf,
)
from napari_astrodenoise.xisf_write import write_xisf

REAL = (
    "ic410_lrgb_f32_pixinsight.xisf",
    "ic410_lum_f32_pixinsight.xisf",
    "m57_mono_u16_zlibsh.xisf",
    "darknoise_mono_u16_zlib.xisf",
    "synthetic_embedded_u16_zstdsh_sha1.xisf",
)
NUMPY = {"UInt8": "u1", "UInt16": "u2", "UInt32": "u4", "Float32": "f4", "Float64": "f8"}


# --------------------------------------------------------------------------- crafting


def _shuffled(raw: bytes, n: int) -> bytes:
    count = len(raw) // n
    return np.frombuffer(raw, np.uint8, count * n).reshape(count, n).T.tobytes() + raw[count * n :]


def _compress_one(data: bytes, name: str) -> bytes:
    if name == "zlib":
        return zlib.compress(data)
    if name in ("lz4", "lz4hc"):
        import lz4.block

        mode = "high_compression" if name == "lz4hc" else "default"
        return lz4.block.compress(data, mode=mode, store_size=False)
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def _compressed(raw: bytes, codec: str, item: int, pieces: int = 1) -> tuple[bytes, str]:
    """The stored block and its attributes (``subblocks`` when cut in ``pieces``)."""
    name, shuffle = codec.removesuffix("+sh"), codec.endswith("+sh")
    data = _shuffled(raw, item) if shuffle else raw
    attrs = f'compression="{codec}:{len(raw)}' + (f':{item}"' if shuffle else '"')
    if pieces == 1:
        return _compress_one(data, name), attrs
    step = -(-len(data) // pieces)
    parts = [data[i : i + step] for i in range(0, len(data), step)]
    packed = [_compress_one(part, name) for part in parts]
    sizes = ":".join(f"{len(c)},{len(u)}" for c, u in zip(packed, parts, strict=True))
    return b"".join(packed), f'{attrs} subblocks="{sizes}"'


def craft_xisf(
    planes: np.ndarray,
    *,
    sample: str = "UInt16",
    storage: str = "Planar",
    codec: str | None = None,
    location: str = "attachment",
    checksum: str | None = None,
    color_space: str | None = None,
    byte_order: str = "little",
    attrs: str = "",
    children: str = "",
    geometry: str | None = None,
    subblocks: int = 1,
) -> bytes:
    """An XISF file of one image made byte by byte; ``planes`` is (C, H, W), top row first."""
    c, h, w = planes.shape
    dtype = np.dtype(("<" if byte_order == "little" else ">") + NUMPY.get(sample, "u2"))
    values = planes.astype(dtype)
    raw = (values if storage == "Planar" else values.transpose(1, 2, 0)).tobytes()
    block_attrs = ""
    stored = raw
    if codec:
        stored, spec = _compressed(raw, codec, dtype.itemsize, subblocks)
        block_attrs += f" {spec}"
    if checksum:
        name = checksum.replace("-", "").replace("sha3", "sha3_")
        block_attrs += f' checksum="{checksum}:{hashlib.new(name, stored).hexdigest()}"'
    cs = color_space or ("Gray" if c == 1 else "RGB")
    shape = geometry or f"{w}:{h}:{c}"
    head = (
        f'<Image geometry="{shape}" sampleFormat="{sample}" colorSpace="{cs}" '
        f'pixelStorage="{storage}" byteOrder="{byte_order}" {attrs}'
    )
    text = base64.b64encode(stored).decode()
    if location == "embedded":
        image = (
            f'{head} location="embedded"><Data encoding="base64"{block_attrs}>{text}</Data>'
            f"{children}</Image>"
        )
    elif location == "inline":
        image = f'{head} location="inline:base64"{block_attrs}>{text}{children}</Image>'
    else:
        where = f'location="attachment:{{pos:010d}}:{len(stored)}"'
        image = f"{head} {where}{block_attrs}>{children}</Image>"
    xml_template = (
        '<?xml version="1.0" encoding="UTF-8"?><xisf version="1.0" '
        f'xmlns="http://www.pixinsight.com/xisf">{image}</xisf>'
    )
    size = len(xml_template.format(pos=0).encode())
    xml = xml_template.format(pos=16 + size).encode()
    body = stored if location == "attachment" else b""
    return b"XISF0100" + len(xml).to_bytes(4, "little") + bytes(4) + xml + body


def _ramp(c: int, h: int, w: int, sample: str) -> np.ndarray:
    top = {"UInt8": 250, "UInt16": 65000, "UInt32": 4_000_000_000}.get(sample)
    values = np.arange(c * h * w, dtype=np.float64).reshape(c, h, w)
    if top is not None:
        return values * (top // values.max())
    return values / 7.0 - 3.0


def _expected(planes: np.ndarray) -> np.ndarray:
    """What the reader must give for top-down ``planes``: FITS row order, float32."""
    out = planes[:, ::-1, :].astype(np.float32)
    return out[0] if out.shape[0] == 1 else out


def _write(tmp_path: Path, content: bytes, name: str = "crafted.xisf") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("sample", list(NUMPY))
@pytest.mark.parametrize("storage", ["Planar", "Normal"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_sample_format_and_storage_reads_in_fits_row_order(
    tmp_path, sample, storage, channels
):
    planes = _ramp(channels, 5, 7, sample)
    path = _write(tmp_path, craft_xisf(planes, sample=sample, storage=storage))
    [image] = read_xisf(path)
    assert image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data, _expected(planes.astype(NUMPY[sample])))
    assert image.kind == ("mono" if channels == 1 else "rgb")
    assert image.file_format == "xisf"


@pytest.mark.parametrize(
    "codec", ["zlib", "zlib+sh", "lz4", "lz4+sh", "lz4hc", "lz4hc+sh", "zstd", "zstd+sh"]
)
@pytest.mark.parametrize("location", ["attachment", "embedded", "inline"])
def test_every_codec_and_block_location_reads(tmp_path, codec, location):
    planes = _ramp(3, 6, 9, "Float32")
    content = craft_xisf(planes, sample="Float32", codec=codec, location=location)
    [image] = read_xisf(_write(tmp_path, content))
    np.testing.assert_array_equal(image.data, _expected(planes.astype("f4")))


@pytest.mark.parametrize("codec", ["zlib+sh", "lz4", "zstd+sh"])
def test_blocks_compressed_in_subblocks_read(tmp_path, codec):
    planes = _ramp(3, 8, 10, "Float32")
    content = craft_xisf(planes, sample="Float32", codec=codec, subblocks=3)
    assert b"subblocks=" in content
    np.testing.assert_array_equal(read_xisf(_write(tmp_path, content))[0].data, _expected(planes))


@pytest.mark.parametrize("algorithm", ["sha1", "sha-256", "sha512", "sha3-256"])
def test_checksum_is_verified_and_a_good_one_passes(tmp_path, algorithm):
    planes = _ramp(1, 4, 4, "UInt16")
    path = _write(tmp_path, craft_xisf(planes, codec="zstd+sh", checksum=algorithm))
    np.testing.assert_array_equal(read_xisf(path)[0].data, _expected(planes.astype("u2")))


def test_big_endian_samples_read(tmp_path):
    planes = _ramp(1, 3, 5, "Float64")
    content = craft_xisf(planes, sample="Float64", byte_order="big")
    np.testing.assert_array_equal(read_xisf(_write(tmp_path, content))[0].data, _expected(planes))


def test_nan_and_inf_are_kept(tmp_path):
    planes = _ramp(1, 3, 4, "Float32")
    planes[0, 0, 0], planes[0, 1, 2], planes[0, 2, 3] = np.nan, np.inf, -np.inf
    [image] = read_xisf(_write(tmp_path, craft_xisf(planes, sample="Float32")))
    assert np.isnan(image.data[2, 0]) and image.data[1, 2] == np.inf
    assert image.data[0, 3] == -np.inf


@pytest.mark.parametrize(
    ("orientation", "turn"),
    [
        ("flip", lambda a: a[:, :, ::-1]),
        ("90", lambda a: np.rot90(a, 1, axes=(1, 2))),
        ("-90;flip", lambda a: np.rot90(a, -1, axes=(1, 2))[:, :, ::-1]),
        ("180", lambda a: a[:, ::-1, ::-1]),
    ],
)
def test_orientation_attribute_is_applied(tmp_path, orientation, turn):
    planes = _ramp(1, 3, 5, "UInt16")
    content = craft_xisf(planes, attrs=f'orientation="{orientation}"')
    [image] = read_xisf(_write(tmp_path, content))
    np.testing.assert_array_equal(image.data, _expected(turn(planes.astype("u2"))))


def test_fits_keywords_become_a_header_with_wcs(tmp_path):
    keywords = "".join(
        f'<FITSKeyword name="{n}" value="{v}" comment="{c}"/>'
        for n, v, c in [
            ("OBJECT", "'M 57'", "target"),
            ("EXPTIME", "300.0", "s"),
            ("GAIN", "139", ""),
            ("FLIPPED", "F", ""),
            ("CTYPE1", "'RA---TAN'", ""),
            ("CTYPE2", "'DEC--TAN'", ""),
            ("CRPIX1", "2.0", ""),
            ("CRPIX2", "1.0", ""),
            ("CRVAL1", "283.396", ""),
            ("CRVAL2", "33.029", ""),
            ("CDELT1", "-0.001", ""),
            ("CDELT2", "0.001", ""),
            ("HISTORY", "", "stacked in PixInsight"),
            ("HISTORY", "", "stacked in PixInsight"),
            ("COMMENT", "", "a note"),
        ]
    )
    path = _write(tmp_path, craft_xisf(_ramp(1, 3, 4, "UInt16"), children=keywords))
    [image] = read_xisf(path)
    header = image.header
    assert header["OBJECT"] == "M 57" and header["EXPTIME"] == 300.0 and header["GAIN"] == 139
    assert header["FLIPPED"] is False and header.comments["OBJECT"] == "target"
    assert list(header["HISTORY"]) == ["stacked in PixInsight"] * 2
    assert list(header["COMMENT"]) == ["a note"]
    sky = image.wcs.pixel_to_world(1, 0)  # CRPIX is 1-based: data row 0 is FITS row 1
    assert sky.ra.deg == pytest.approx(283.396) and sky.dec.deg == pytest.approx(33.029)


def test_properties_of_every_kind_are_read(tmp_path):
    vector = base64.b64encode(np.array([1.5, -2.0], "<f8").tobytes()).decode()
    matrix = base64.b64encode(np.arange(6, dtype="<i4").tobytes()).decode()
    children = (
        '<Property id="Observation:Object:Name" type="String">M 57 &amp; field</Property>'
        '<Property id="Instrument:ExposureTime" type="Float32" value="300"/>'
        '<Property id="Image:FrameNumber" type="UInt32" value="7"/>'
        '<Property id="Test:Flag" type="Boolean" value="true"/>'
        '<Property id="Test:Z" type="Complex64" value="(1.5,-2)"/>'
        '<Property id="Observation:Time:Start" type="TimePoint" value="2024-05-01T22:00:00Z"/>'
        f'<Property id="Test:V" type="F64Vector" length="2" location="inline:base64">{vector}'
        "</Property>"
        f'<Property id="Test:M" type="I32Matrix" rows="2" columns="3" '
        f'location="inline:base64">{matrix}</Property>'
    )
    content = craft_xisf(_ramp(1, 2, 2, "UInt16"), children=children)
    props = read_xisf(_write(tmp_path, content))[0].format_info["properties"]
    assert props["Observation:Object:Name"] == XisfProperty("String", "M 57 & field")
    assert props["Instrument:ExposureTime"].value == 300.0
    assert props["Image:FrameNumber"].value == 7 and props["Test:Flag"].value is True
    assert props["Test:Z"].value == complex(1.5, -2)
    assert props["Observation:Time:Start"].value == "2024-05-01T22:00:00Z"
    np.testing.assert_array_equal(props["Test:V"].value, [1.5, -2.0])
    np.testing.assert_array_equal(props["Test:M"].value, np.arange(6).reshape(2, 3))


def test_cfa_pattern_follows_the_row_reversal(tmp_path):
    children = '<ColorFilterArray pattern="RGGB" width="2" height="2"/>'
    even = read_xisf(_write(tmp_path, craft_xisf(_ramp(1, 4, 4, "UInt16"), children=children)))
    odd = read_xisf(
        _write(tmp_path, craft_xisf(_ramp(1, 5, 4, "UInt16"), children=children), "odd.xisf")
    )
    assert even[0].bayer_pattern == "GBRG"  # the bottom row (now row 0) is a G-B row
    assert odd[0].bayer_pattern == "RGGB"


@pytest.mark.parametrize(
    "text", ["'M 57'", "'it''s'", "T", "F", "42", "-3", "1.5", "1.5E-3", "1.0D+2", ""]
)
def test_fits_values_parse_and_format_back(text):
    value = parse_fits_value(text)
    assert parse_fits_value(format_fits_value(value)) == value


# --------------------------------------------------------------------------- bad input


def _wrong_subblocks(content: bytes) -> bytes:
    """The same file with the first sub-block's compressed size changed (same length)."""
    at = content.index(b'subblocks="') + len(b'subblocks="')
    digit = str((int(content[at : at + 1]) + 1) % 10).encode()
    return content[:at] + digit + content[at + 1 :]


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    planes = _ramp(1, 8, 8, "UInt16")
    good = craft_xisf(planes, codec="zlib+sh", checksum="sha1")
    xml_end = good.index(b"</xisf>") + len(b"</xisf>")
    corrupt = bytearray(good)
    corrupt[-3] ^= 0xFF
    cases = {
        "truncated": (good[:-10], "truncated"),
        "bad_checksum": (bytes(corrupt), "checksum"),
        "unknown_codec": (
            good.replace(b'"zlib+sh:', b'"zlip+sh:'),
            "unknown compression 'zlip+sh'",
        ),
        "bad_xml": (good.replace(b"<Image ", b"<Image<"), "XML header does not parse"),
        "not_xisf": (b"SIMPLE  =" + good[9:], "not an XISF file"),
        "header_cut": (good[: xml_end - 40], "truncated"),
        "empty": (b"", "empty"),
        "complex": (craft_xisf(planes, sample="Complex32"), "complex samples"),
        "alpha": (craft_xisf(_ramp(4, 3, 3, "UInt16"), color_space="RGB"), "alpha channel"),
        "gray_stack": (craft_xisf(_ramp(5, 3, 3, "UInt16"), color_space="Gray"), "alpha"),
        "cielab": (craft_xisf(_ramp(3, 3, 3, "UInt16"), color_space="CIELab"), "CIELab"),
        "external": (
            craft_xisf(planes).replace(b'location="attachment:', b'location="url(x.bin):'),
            "another file",
        ),
        "not_decompressing": (
            craft_xisf(planes, codec="zlib").replace(b'compression="zlib:', b'compression="zstd:'),
            "does not decompress",
        ),
        "three_d": (craft_xisf(planes, geometry="8:4:2:1"), "only 2-D images"),
        "bad_subblocks": (
            _wrong_subblocks(craft_xisf(planes, codec="zlib", subblocks=2)),
            "add up",
        ),
    }
    out = {}
    for name, (content, words) in cases.items():
        out[name] = (_write(tmp_path, content, f"{name}.xisf"), words)
    return out


BAD = (
    "truncated",
    "bad_checksum",
    "unknown_codec",
    "bad_xml",
    "not_xisf",
    "header_cut",
    "empty",
    "complex",
    "alpha",
    "gray_stack",
    "cielab",
    "external",
    "not_decompressing",
    "three_d",
    "bad_subblocks",
)


@pytest.mark.parametrize("case", BAD)
def test_bad_input_gives_one_clear_error_and_leaves_the_file_alone(tmp_path, case):
    path, words = _bad_files(tmp_path)[case]
    before = _sha256(path)
    with pytest.raises(XisfReadError) as info:
        read_xisf(path)
    message = str(info.value)
    assert message.startswith(f"Cannot open XISF file '{path}'")
    assert words in message and "\n" not in message
    assert _sha256(path) == before


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(XisfReadError, match="no such file"):
        read_xisf(tmp_path / "nowhere.xisf")


# --------------------------------------------------------------------------- writing


def _kept_cards(header: fits.Header) -> list[tuple[str, object, str]]:
    return [
        (c.keyword, c.value, c.comment)
        for c in header.cards
        if c.keyword not in WRITER_CHANGED_KEYWORDS and not c.keyword.startswith("NAXIS")
    ]


def _write_back(image, path: Path, **kwargs) -> Path:
    info = image.format_info
    return write_xisf(
        path,
        image.data,
        header=image.header,
        channel_axis=0 if image.data.ndim == 3 else None,
        properties=info.get("properties"),
        file_properties=info.get("file_properties"),
        icc_profile=info.get("icc_profile"),
        **kwargs,
    )


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("compress", [False, True])
def test_real_files_round_trip_bit_exact_with_keywords_properties_and_icc(
    shared_formats_dir, tmp_path, name, compress
):
    source = shared_formats_dir / name
    before = _sha256(source)
    [image] = read_xisf(source)
    out = _write_back(image, tmp_path / name, compress=compress, history=["a test line"])
    [back] = read_xisf(out)
    assert back.data.dtype == np.float32
    np.testing.assert_array_equal(back.data, image.data)
    n = len(image.header)
    assert _kept_cards(back.header)[:n] == _kept_cards(image.header)
    assert list(back.header["HISTORY"])[-1] == "a test line"
    for key, prop in image.format_info["properties"].items():
        assert back.format_info["properties"][key] == prop
    assert back.format_info["icc_profile"] == image.format_info["icc_profile"]
    history = back.format_info["properties"]["Processing:History"].value
    assert "napari-astrodenoise" in history and history.endswith("a test line")
    assert _sha256(source) == before


def test_real_rgb_file_matches_the_xisf_package(shared_formats_dir):
    xisf = pytest.importorskip("xisf")
    path = shared_formats_dir / "ic410_lrgb_f32_pixinsight.xisf"
    reference = xisf.XISF(str(path)).read_image(0, data_format="channels_first")
    [image] = read_xisf(path)
    np.testing.assert_array_equal(image.data, reference[:, ::-1, :])
    assert image.header["OBJECT"] == "IC410" and image.format_info["icc_profile"][36:40] == b"acsp"


def test_embedded_zstd_file_with_checksums_reads(shared_formats_dir):
    [image] = read_xisf(shared_formats_dir / "synthetic_embedded_u16_zstdsh_sha1.xisf")
    assert image.data.shape == (150, 200) and np.all(image.data == 32768)
    assert image.format_info["icc_profile"][36:40] == b"acsp"
    assert "PixInsight:ProcessingHistory" in image.format_info["properties"]


@pytest.mark.filterwarnings("ignore:Card is too long:astropy.io.fits.verify.VerifyWarning")
def test_xisf_to_fits_to_xisf_keeps_the_pixels(shared_formats_dir, tmp_path):
    [image] = read_xisf(shared_formats_dir / "ic410_lrgb_f32_pixinsight.xisf")
    fits_path = write_fits(tmp_path / "mid.fits", image.data, header=image.header, channel_axis=0)
    [middle] = read_fits(fits_path)
    np.testing.assert_array_equal(middle.data, image.data)
    assert middle.header["OBJECT"] == "IC410"
    [back] = read_xisf(
        write_xisf(tmp_path / "back.xisf", middle.data, header=middle.header, channel_axis=0)
    )
    np.testing.assert_array_equal(back.data, image.data)


@pytest.mark.parametrize("compress", [False, True])
def test_written_file_opens_in_the_xisf_package_the_right_way_up(tmp_path, compress):
    xisf = pytest.importorskip("xisf")
    fits_rows = _ramp(3, 5, 6, "Float32").astype(np.float32)  # row 0 = bottom
    out = write_xisf(tmp_path / "out.xisf", fits_rows, channel_axis=0, compress=compress)
    reference = xisf.XISF(str(out)).read_image(0, data_format="channels_first")
    np.testing.assert_array_equal(reference, fits_rows[:, ::-1, :])  # XISF: top row first


def test_same_sky_from_fits_and_xisf_gives_the_same_array(tmp_path):
    xisf = pytest.importorskip("xisf")
    top_down = _ramp(1, 6, 8, "Float32").astype(np.float32)[0]
    xisf.XISF.write(str(tmp_path / "sky.xisf"), top_down[:, :, None])
    fits.PrimaryHDU(top_down[::-1]).writeto(tmp_path / "sky.fits")  # FITS: bottom row first
    [from_xisf] = read_xisf(tmp_path / "sky.xisf")
    [from_fits] = read_fits(tmp_path / "sky.fits")
    np.testing.assert_array_equal(from_xisf.data, from_fits.data)


def test_writer_keeps_nans_and_provenance(tmp_path):
    data = _ramp(1, 4, 5, "Float32")[0].astype(np.float32)
    data[1, 1] = np.nan
    out = write_xisf(tmp_path / "p.xisf", data, provenance={"DNSTRENG": (0.5, "strength")})
    [back] = read_xisf(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.header["DNSTRENG"] == 0.5 and back.header.comments["DNSTRENG"] == "strength"


def test_writer_refuses_stacks_and_existing_files(tmp_path):
    with pytest.raises(ValueError, match="mono or RGB"):
        write_xisf(tmp_path / "s.xisf", np.zeros((5, 4, 4), np.float32), channel_axis=0)
    target = tmp_path / "exists.xisf"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        write_xisf(target, np.zeros((4, 4), np.float32))
    assert target.read_bytes() == b"mine"


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import napari_astrodenoise.fits_write as fits_write

    target = tmp_path / "old.xisf"
    target.write_bytes(b"old content")

    def broken_replace(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(fits_write.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_xisf(target, np.ones((4, 4), np.float32), overwrite=True)
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.xisf"]
