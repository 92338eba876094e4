// The chat page's script, in the style of the original Sacrificial-Socket chat example: join the room
// on connect, `joinedRoom` back, `message` as {Room, Message} JSON out and plain text in.
(function(SS){ 'use strict';
	var list        = document.querySelector('#message-list'),
		nameInput   = document.querySelector('#name-input'),
		roomInput   = document.querySelector('#join-room-input'),
		joinBtn     = document.querySelector('#join-room-btn'),
		bodyInput   = document.querySelector('#message-body-input'),
		sendBtn     = document.querySelector('#message-send-btn'),
		currentRoom = null,

		addMsg = function(text){
			var li = document.createElement('li');
			li.innerText = text;
			list.appendChild(li);
		};

	var ss = new SS('ws://'+window.location.host+'/socket');

	ss.onConnect(function(){
		ss.emit('join', roomInput.value);
	});

	ss.onDisconnect(function(){
		addMsg('chat disconnected');
	});

	ss.on('joinedRoom', function(room){
		currentRoom = room;
		addMsg('joined room: '+room);
	});

	ss.on('message', function(msg){
		addMsg(msg);
	});

	sendBtn.addEventListener('click', function(){
		var msg = bodyInput.value;
		if(msg.length === 0) return;
		ss.emit('message', {Room: currentRoom, Message: nameInput.value+' says: '+msg});
		bodyInput.value = '';
	});

	joinBtn.addEventListener('click', function(){
		if(roomInput.value.length === 0) return;
		ss.emit('join', roomInput.value);
	});
})(window.SS);
