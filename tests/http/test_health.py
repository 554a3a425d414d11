def test_health_answers_ok(client):
    response = client.http.get("/v1/health")
    assert response.status_code == 200
    assert response.json_body == {"status": "ok"}



def test_errors_chalice_raises_itself_get_the_contract_body(client):
    response = client.http.delete("/v1/health")
    assert response.status_code == 405
    assert response.json_body == {"code": "METHOD_NOT_ALLOWED", "message": "该接口不支持此请求方法", "details": {}}
    unsupported = client.http.post("/v1/auth/wechat", body="code=x",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsupported.status_code == 415
    assert unsupported.json_body["code"] == "UNSUPPORTED_MEDIA_TYPE"
