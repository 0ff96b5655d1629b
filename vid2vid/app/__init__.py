"""`vid2vid app`: try an exported model in the browser (a local server and one static page).

    exports.py  the exports under the --exports folders, addressed by id
    jobs.py     render jobs: render_video in a thread per job, then output.mp4, player.mp4 and E_warp
    paint.py    paint mode: a painted label map + a camera move -> a folder of label maps
    live.py     live mode: camera frames over a WebSocket -> VideoRenderer.step -> frames back (newest frame only)
    server.py   the Starlette app: the page and the JSON API
    serve.py    serve(): find the exports, bind, print the URL, run uvicorn, remove the temporary folder on exit
    static/     the page (HTML, JS, CSS; nothing loaded from elsewhere)
"""
