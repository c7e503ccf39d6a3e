from pathlib import Path

from worker.devstack.nginx_conf import NginxConfig, render, temp_dirs


def cfg(secret: str | None = "s3cr/t") -> NginxConfig:
    return NginxConfig(run_dir=Path("/run/x"), rtmp_port=1940, http_port=8085, api_url="http://127.0.0.1:9000/",
                       secret=secret, rtmp_module=Path("/m/ngx_rtmp_module.so"))


def test_render_wires_hooks_with_secret_and_paths():
    text = render(cfg())
    assert "listen 127.0.0.1:1940;" in text
    assert "listen 127.0.0.1:8085;" in text
    assert "on_publish http://127.0.0.1:9000/v1/hooks/nginx-rtmp/publish?secret=s3cr%2Ft;" in text
    assert "on_publish_done http://127.0.0.1:9000/v1/hooks/nginx-rtmp/publish-done?secret=s3cr%2Ft;" in text
    assert "on_play http://127.0.0.1:9000/v1/hooks/nginx-rtmp/play?secret=s3cr%2Ft;" in text
    assert "publish_notify on;" in text
    assert "pid /run/x/nginx.pid;" in text
    assert "client_body_temp_path /run/x/tmp/client_body;" in text
    assert "load_module /m/ngx_rtmp_module.so;" in text
    assert "rtmp_stat all;" in text
    assert "$" not in text  # every placeholder was filled


def test_render_without_secret_has_no_query():
    assert "publish;" in render(cfg(None))


def test_temp_dirs_are_in_the_run_dir():
    assert all(str(d).startswith("/run/x/tmp/") for d in temp_dirs(Path("/run/x")))
